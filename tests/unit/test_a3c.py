"""A3C: gradients applied in arrival order, policy lag (staleness) accounted per gradient, stale
gradients dropped on request, a dead runner recreated, and checkpoint round trips."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

from kuberl.algorithms.a3c import A3C, Gradient
from kuberl.build import build_algorithm
from kuberl.spec import SpecError, parse_job
from tests.fixtures.jobs import job_doc


def job(tmp_path: Path, config: dict[str, Any] | None = None, *, runners: int = 0) -> dict[str, Any]:
    small = {"rolloutFragmentLength": 5, "minSampleTimestepsPerIteration": 40}
    return job_doc(
        "A3C",
        "CartPole-v1",
        seed=5,
        name="a3c-test",
        run_dir=tmp_path,
        config={**small, **(config or {})},
        runners=runners,
        envs_per_runner=2,
    )


class ScriptedPool:
    """Stands in for the runner group: three runners whose replies arrive in a scripted order."""

    def __init__(self, order: list[int], names: list[str]) -> None:
        self.order = list(order)
        self.names = names
        self.pending: dict[int, int] = {}  # runner → version of the weights it was sent
        self.submitted: list[tuple[int, int]] = []

    def idle(self) -> list[int]:
        return [i for i in range(3) if i not in self.pending]

    def submit(self, i: int, weights: dict[str, np.ndarray], filter_state: Any, version: int) -> None:
        self.pending[i] = version
        self.submitted.append((i, version))

    def wait_one(self) -> tuple[int, Gradient | None]:
        i = self.order.pop(0)
        grads = {n: np.full((1,), float(i)) for n in self.names}  # runner i's gradient is all i
        return i, Gradient(grads=grads, version=self.pending.pop(i), env_steps=10, stats={"total_loss": 1.0})

    def cancel_all(self) -> None:
        self.pending.clear()


def scripted(tmp_path: Path, config: dict[str, Any]) -> tuple[A3C, ScriptedPool, list[float]]:
    algo = build_algorithm(job(tmp_path, config))
    assert isinstance(algo, A3C)
    names = [n for n, _ in algo.learner.module.named_parameters()]
    pool = ScriptedPool([2, 0, 0, 1, 2], names)
    algo.pool = pool  # type: ignore[assignment]
    applied: list[float] = []

    def record(grads: Mapping[str, np.ndarray], *, timesteps: int) -> float:
        applied.append(float(grads[names[0]][0]))
        return 0.0

    algo.learner.apply_numpy_gradients = record  # type: ignore[method-assign]
    return algo, pool, applied


def test_gradients_apply_in_arrival_order_and_lag_counts_updates_since_the_weights(tmp_path: Path) -> None:
    algo, pool, applied = scripted(tmp_path, {"minSampleTimestepsPerIteration": 50})
    try:
        stats = algo.train()["learner"]["default_policy"]
    finally:
        algo.stop()
    assert applied == [2.0, 0.0, 0.0, 1.0, 2.0]
    # Everyone starts from version 0; each reply is followed by a request with the fresh version.
    assert pool.submitted == [(0, 0), (1, 0), (2, 0), (2, 1), (0, 2), (0, 3), (1, 4), (2, 5)]
    # Lags: runner 2 at v0 → 0; runner 0 at v0 after 1 update → 1; runner 0 at v2 → 0; runner 1 at v0 → 3;
    # runner 2 at v1 after 4 updates → 3.
    assert stats["policy_lag_mean"] == pytest.approx((0 + 1 + 0 + 3 + 3) / 5)
    assert stats["policy_lag_max"] == 3
    assert stats["gradients_applied"] == 5
    assert stats["policy_version"] == 5
    assert algo.timesteps == 50


def test_max_policy_lag_drops_stale_gradients_but_counts_their_steps(tmp_path: Path) -> None:
    algo, _, applied = scripted(tmp_path, {"minSampleTimestepsPerIteration": 50, "maxPolicyLag": 2})
    try:
        result = algo.train()
    finally:
        algo.stop()
    stats = result["learner"]["default_policy"]
    # Runner 1's reply (sent at v0, arriving after 3 updates) is dropped; runner 2's (v1, 2 updates old) is kept.
    assert applied == [2.0, 0.0, 0.0, 2.0]
    assert stats["gradients_dropped"] == 1
    assert result["num_env_steps_trained"] == 40
    assert algo.timesteps == 50


def test_in_process_mode_learns_synchronously_with_zero_lag(tmp_path: Path) -> None:
    algo = build_algorithm(job(tmp_path))
    assert isinstance(algo, A3C)
    try:
        before = {k: v.clone() for k, v in algo.learner.module.state_dict().items()}
        stats = algo.train()["learner"]["default_policy"]
        after = algo.learner.module.state_dict()
    finally:
        algo.stop()
    assert stats["gradients_applied"] == 4  # 40 steps / (5 steps × 2 envs)
    assert stats["policy_lag_max"] == 0
    assert any(not torch.equal(before[k], after[k]) for k in before)
    for key in ("total_loss", "policy_loss", "vf_loss", "entropy", "grad_norm"):
        assert np.isfinite(stats[key])


def test_inconsistent_config_is_rejected(tmp_path: Path) -> None:
    with pytest.raises(SpecError, match="lambda only applies"):
        parse_job(job(tmp_path, {"useGae": False, "lambda": 0.9}))


def test_save_restore_gives_identical_actions(tmp_path: Path) -> None:
    algo = build_algorithm(job(tmp_path))
    assert isinstance(algo, A3C)
    obs = np.random.default_rng(0).normal(size=(16, 4)).astype(np.float32)
    try:
        algo.train()
        algo.train()
        uri = algo.save(str(tmp_path / "ckpt"))
        expected = algo.compute_actions(obs)
        version = algo.version
    finally:
        algo.stop()
    fresh = build_algorithm(job(tmp_path))
    assert isinstance(fresh, A3C)
    try:
        fresh.restore(uri)
        np.testing.assert_array_equal(fresh.compute_actions(obs), expected)
        assert fresh.version == version == 8
        assert fresh.train()["learner"]["default_policy"]["policy_lag_max"] == 0
    finally:
        fresh.stop()


@pytest.mark.usefixtures("ray_session")
def test_dead_runner_is_recreated_and_training_goes_on(tmp_path: Path) -> None:
    algo = build_algorithm(job(tmp_path, runners=2))
    try:
        algo.train()
        algo.runners.kill_runner_for_test(0)
        steps = algo.timesteps
        for _ in range(3):
            result = algo.train()
        assert algo.timesteps > steps
        assert result["env_runners"]["restarts_total"] >= 1
        assert result["env_runners"]["num_healthy"] == 2
    finally:
        algo.stop()
