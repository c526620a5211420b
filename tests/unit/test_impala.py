"""IMPALA: config validation, in-process training, checkpoint round trip, asynchronous sampling with
Ray (exact weights-version tags, policy lag, a dead runner recreated) and learner-side replay."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from pydantic import ValidationError

from kuberl.build import build_algorithm
from kuberl.core.async_sampling import AsyncSampler
from kuberl.core.sample_batch import Columns
from kuberl.spec.algorithms.impala import IMPALAConfig
from tests.fixtures.jobs import job_doc


def job(runners: int = 0, **config: Any) -> dict[str, Any]:
    small = {"train_batch_size": 80, "rollout_fragment_length": 20, "min_sample_timesteps_per_iteration": 160}
    return job_doc("IMPALA", "CartPole-v1", seed=3, config={**small, **config}, runners=runners)


# -- config ----------------------------------------------------------------------------------------


def test_config_accepts_rllib_names_and_camel_case() -> None:
    cfg = IMPALAConfig.model_validate(
        {"num_sgd_iter": 3, "vtraceClipRhoThreshold": 2.0, "vtrace_clip_pg_rho_threshold": None}
    )
    assert cfg.num_epochs == 3
    assert cfg.vtrace_clip_rho_threshold == 2.0
    assert cfg.vtrace_clip_pg_rho_threshold is None
    assert all(f.description for f in IMPALAConfig.model_fields.values())


@pytest.mark.parametrize(
    ("config", "message"),
    [
        ({"train_batch_size": 100, "minibatch_size": 200}, "must not exceed train_batch_size"),
        ({"rollout_fragment_length": 50, "minibatch_size": 20}, "at least one sequence"),
        ({"replay_proportion": 0.5}, "needs replay_buffer_num_slots"),
        ({"broadcast_interval": 0}, "greater than or equal to 1"),
        ({"vtrace_clip_rho_threshold": 0.0}, "greater than 0"),
    ],
)
def test_config_rejects_inconsistent_settings_with_reasons(config: dict[str, Any], message: str) -> None:
    with pytest.raises(ValidationError, match=message):
        IMPALAConfig.model_validate(config)


# -- training in-process (envRunners: 0) -----------------------------------------------------------


def test_in_process_training_reports_losses_and_policy_lag(tmp_path: Path) -> None:
    algo = build_algorithm(job(broadcast_interval=2), run_dir=tmp_path)
    try:
        r1 = algo.train()
        r2 = algo.train()
    finally:
        algo.stop()
    stats = r2["learner"]["default_policy"]
    for key in ("total_loss", "policy_loss", "vf_loss", "entropy", "mean_rho", "grad_norm", "lr"):
        assert np.isfinite(stats[key]), key
    # In-process sampling is synchronous: the lag is only the broadcast interval's (0 or 1 here).
    assert 0.0 <= stats["policy_lag_mean"] <= stats["policy_lag_max"] <= 1.0
    assert r1["num_env_steps_sampled"] >= 160
    assert r2["timesteps_total"] == r1["num_env_steps_sampled"] + r2["num_env_steps_sampled"]
    assert r2["num_env_steps_trained"] == stats["num_updates"] * 80


def logits_of(algo: Any, obs: np.ndarray) -> torch.Tensor:
    with torch.no_grad():
        return algo.policy_module()(torch.as_tensor(obs))[0]


def test_checkpoint_restore_gives_identical_actions_and_state(tmp_path: Path) -> None:
    algo = build_algorithm(job(), run_dir=tmp_path / "a")
    obs = np.random.default_rng(0).normal(size=(16, 4)).astype(np.float32)
    try:
        algo.train()
        uri = algo.save(str(tmp_path / "ckpt"))
        expected = algo.compute_actions(obs)
        logits = logits_of(algo, obs)
        version = algo.learner.version
        optim = algo.learner.optimizer.state_dict()["state"]
    finally:
        algo.stop()
    fresh = build_algorithm(job(), run_dir=tmp_path / "b")
    try:
        assert not torch.equal(logits_of(fresh, obs), logits)
        fresh.restore(uri)
        np.testing.assert_array_equal(fresh.compute_actions(obs), expected)
        torch.testing.assert_close(logits_of(fresh, obs), logits, rtol=0, atol=0)
        assert fresh.learner.version == version
        restored = fresh.learner.optimizer.state_dict()["state"]
        torch.testing.assert_close(restored[0]["exp_avg"], optim[0]["exp_avg"])
        assert fresh.train()["training_iteration"] == 2  # and training carries on
    finally:
        fresh.stop()


def test_replay_proportion_trains_on_replayed_batches(tmp_path: Path) -> None:
    algo = build_algorithm(job(replay_proportion=1.0, replay_buffer_num_slots=4), run_dir=tmp_path)
    try:
        result = algo.train()
    finally:
        algo.stop()
    # Every fresh batch is followed by exactly one replayed one.
    assert result["num_env_steps_trained"] == 2 * result["num_env_steps_sampled"]


# -- asynchronous sampling with Ray ----------------------------------------------------------------


@pytest.mark.usefixtures("ray_session")
def test_fragments_are_tagged_with_the_weights_that_sampled_them(tmp_path: Path) -> None:
    algo = build_algorithm(job(runners=1), run_dir=tmp_path)
    try:
        sampler = AsyncSampler(algo.runners, requests_per_runner=1)
        first = sampler.poll()
        assert [f.weights_version for f in first] == [0]
        # Weights whose policy always picks action 1 (large bias on that logit), as version 7.
        weights = {k: np.array(v) for k, v in algo.get_weights().items()}
        bias = next(k for k in weights if k.startswith("pi.") and weights[k].shape == (2,))
        weights[bias][:] = [-50.0, 50.0]
        sampler.set_weights(weights, None, None, version=7)
        # The request queued by the first poll still used version 0; the one after it uses 7.
        seen: dict[int, np.ndarray] = {}
        while 7 not in seen:
            for f in sampler.poll():
                seen[f.weights_version] = f.rollout.batch[Columns.ACTIONS]
        assert set(seen) <= {0, 7}
        assert (seen[7] == 1).all()
    finally:
        algo.stop()


@pytest.mark.usefixtures("ray_session")
def test_two_runners_report_lag_and_survive_a_dead_runner(tmp_path: Path) -> None:
    algo = build_algorithm(job(runners=2), run_dir=tmp_path)
    try:
        result = algo.train()
        stats = result["learner"]["default_policy"]
        assert stats["policy_lag_max"] >= stats["policy_lag_mean"] >= 0.0
        algo.runners.kill_runner_for_test(0)
        for _ in range(2):
            result = algo.train()
        assert result["env_runners"]["restarts_total"] == 1
        assert result["env_runners"]["num_healthy"] == 2
        assert result["num_env_steps_sampled"] >= 160
    finally:
        algo.stop()
