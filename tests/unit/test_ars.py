"""ARS V2-t: θ starts at 0, only the top-b directions move it, the step is divided by the returns' std,
states are normalised by running statistics, config refusals, and checkpoint round trips."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

from kuberl.algorithms.ars import ARS
from kuberl.algorithms.families.evolution import noise
from kuberl.build import build_algorithm
from kuberl.spec import SpecError, parse_job
from tests.fixtures.jobs import job_doc


def ars_job(tmp_path: Path, **config: Any) -> dict[str, Any]:
    cfg = {"num_rollouts": 4, "rollouts_used": 2, "sgd_stepsize": 0.02, "noise_stdev": 0.03, **config}
    return job_doc("ARS", "CartPole-v1", seed=0, run_dir=tmp_path, config=cfg)


def build_ars(doc: dict[str, Any]) -> ARS:
    algo = build_algorithm(doc)
    assert isinstance(algo, ARS)
    return algo


def test_linear_policy_starts_at_zero(tmp_path: Path) -> None:
    algo = build_ars(ars_job(tmp_path))
    try:
        # Linear map on CartPole's 4 features to 2 logits (+ bias): 10 parameters, all zero.
        assert algo.theta.numel() == 4 * 2 + 2
        assert not algo.theta.any()
    finally:
        algo.stop()


def test_update_uses_the_top_b_directions_scaled_by_the_reward_std(tmp_path: Path) -> None:
    algo = build_ars(ars_job(tmp_path))
    try:
        seeds = np.array([11, 22, 33, 44])
        plus = np.array([10.0, 50.0, 1.0, 2.0])
        minus = np.array([5.0, 20.0, 3.0, 60.0])
        # max(r⁺, r⁻): 10, 50, 3, 60 → top 2 are directions 3 (60) and 1 (50).
        algo.update(seeds, plus, minus)
        dim = algo.theta.numel()
        sigma_r = np.std([50.0, 2.0, 20.0, 60.0])
        expected = 0.02 / (2 * sigma_r) * ((50 - 20) * noise(22, dim) + (2 - 60) * noise(44, dim))
        np.testing.assert_allclose(algo.theta.numpy(), expected, rtol=1e-5)
    finally:
        algo.stop()


def test_equal_returns_leave_theta_unchanged(tmp_path: Path) -> None:
    algo = build_ars(ars_job(tmp_path))
    try:
        stats = algo.update(np.array([1, 2, 3, 4]), np.full(4, 500.0), np.full(4, 500.0))
        assert stats["reward_std"] == 0.0
        assert not algo.theta.any()
    finally:
        algo.stop()


def test_iterations_normalise_states_and_checkpoint_everything(tmp_path: Path) -> None:
    a = build_ars(ars_job(tmp_path / "a"))
    b = build_ars(ars_job(tmp_path / "b"))
    try:
        a.train()
        result = a.train()
        assert result["episodes_this_iter"] == 8
        assert a.obs_filter is not None
        assert a.obs_filter.count == a.timesteps  # V2: every visited state enters the statistics
        assert a.theta.any()
        b.train()
        b.restore(a.save(str(tmp_path / "ckpt")))
        assert torch.equal(a.theta, b.theta)
        a.train()
        b.train()
        assert torch.equal(a.theta, b.theta)
        assert a.timesteps == b.timesteps
    finally:
        a.stop()
        b.stop()


@pytest.mark.parametrize(
    ("config", "reason"),
    [
        ({"rollouts_used": 5}, "cannot exceed num_rollouts"),
        ({"lr": 0.1}, "set sgdStepsize instead"),
        ({"grad_clip": 1.0}, "never takes a loss gradient"),
    ],
)
def test_bad_config_is_refused_with_a_reason(tmp_path: Path, config: dict[str, Any], reason: str) -> None:
    with pytest.raises(SpecError) as err:
        parse_job(ars_job(tmp_path, **config))
    assert reason in str(err.value), str(err.value)
