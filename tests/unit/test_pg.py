"""PG: Monte-Carlo returns (bootstrapped only where an episode is cut), the baseline's advantage,
config validation, and checkpoint round trips."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest

from kuberl.algorithms.families.actor_critic import loss_batch
from kuberl.build import build_algorithm
from kuberl.core.returns import discounted_returns
from kuberl.core.sample_batch import Columns, SampleBatch
from kuberl.spec import SpecError, parse_job
from tests.fixtures.jobs import job_doc


def col(*xs: float) -> np.ndarray:
    return np.array(xs, dtype=np.float32)[:, None]


def flags(n: int, *at: int) -> np.ndarray:
    out = np.zeros((n, 1), dtype=bool)
    for t in at:
        out[t] = True
    return out


def test_monte_carlo_returns_ignore_next_values_inside_an_episode() -> None:
    # next_values are V(s_{t+1}) for every step, as the runner records them: only the last one (the
    # fragment is cut there) may enter the return.
    ret = discounted_returns(col(1, 1, 1), col(7, 7, 4), flags(3), flags(3), gamma=0.5)
    np.testing.assert_allclose(ret[:, 0], [1 + 0.5 * (1 + 0.5 * (1 + 0.5 * 4)), 1 + 0.5 * (1 + 0.5 * 4), 3.0])


def test_monte_carlo_returns_bootstrap_on_truncation_not_on_termination() -> None:
    # Episode A: steps 0–1, truncated at 1 with V(final) = 10. Episode B: steps 2–3, terminated at 3.
    ret = discounted_returns(col(1, 1, 1, 1), col(7, 10, 7, 7), flags(4, 3), flags(4, 1), gamma=0.5)
    np.testing.assert_allclose(ret[:, 0], [1 + 0.5 * 6, 1 + 0.5 * 10, 1 + 0.5 * 1, 1])


def test_advantage_is_return_minus_baseline() -> None:
    b = SampleBatch(
        {
            Columns.OBS: np.zeros((2, 1, 3), dtype=np.float32),
            Columns.ACTIONS: np.zeros((2, 1), dtype=np.int64),
            Columns.REWARDS: col(1, 2),
            Columns.VF_PREDS: col(0.5, 1.5),
            Columns.NEXT_VF_PREDS: col(9, 0),
            Columns.TERMINATEDS: flags(2, 1),
            Columns.TRUNCATEDS: flags(2),
        }
    )
    flat = loss_batch(b, gamma=0.9, lambda_=1.0, use_gae=False)
    np.testing.assert_allclose(flat[Columns.VALUE_TARGETS], [1 + 0.9 * 2, 2])
    np.testing.assert_allclose(flat[Columns.ADVANTAGES], [1 + 0.9 * 2 - 0.5, 2 - 1.5])
    assert Columns.NEXT_VF_PREDS not in flat


def job(tmp_path: Path, config: dict[str, Any]) -> dict[str, Any]:
    return job_doc("PG", "CartPole-v1", seed=2, name="pg-test", run_dir=tmp_path, config=config)


def test_inconsistent_config_is_rejected(tmp_path: Path) -> None:
    with pytest.raises(SpecError, match="not both"):
        parse_job(job(tmp_path, {"trainBatchSize": 100, "rolloutFragmentLength": 5}))
    with pytest.raises(SpecError, match="rmspropAlpha only applies"):
        parse_job(job(tmp_path, {"rmspropAlpha": 0.5}))


def test_save_restore_gives_identical_actions(tmp_path: Path) -> None:
    algo = build_algorithm(job(tmp_path, {"trainBatchSize": 200}))
    obs = np.random.default_rng(0).normal(size=(16, 4)).astype(np.float32)
    try:
        result = algo.train()
        algo.train()
        uri = algo.save(str(tmp_path / "ckpt"))
        expected = algo.compute_actions(obs)
    finally:
        algo.stop()
    assert result["num_env_steps_trained"] == 200
    for key in ("total_loss", "policy_loss", "vf_loss", "entropy"):
        assert np.isfinite(result["learner"]["default_policy"][key])
    fresh = build_algorithm(job(tmp_path, {"trainBatchSize": 200}))
    try:
        fresh.restore(uri)
        np.testing.assert_array_equal(fresh.compute_actions(obs), expected)
        assert fresh.timesteps == 400
    finally:
        fresh.stop()
