"""APPO: config validation, the loss at the on-policy point, the target network's refresh, in-process
training and the checkpoint round trip (the asynchronous machinery is IMPALA's, tested there)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import gymnasium as gym
import numpy as np
import pytest
import torch
from pydantic import ValidationError

from kuberl.algorithms.appo import APPOLearner, appo_loss
from kuberl.build import build_algorithm
from kuberl.core.models import action_distribution, build_model
from kuberl.core.sample_batch import Columns, SampleBatch
from kuberl.spec.algorithms.appo import APPOConfig
from tests.fixtures.jobs import job_doc


def job(**config: Any) -> dict[str, Any]:
    small = {"train_batch_size": 80, "rollout_fragment_length": 20, "min_sample_timesteps_per_iteration": 160}
    return job_doc("APPO", "CartPole-v1", seed=5, config={**small, **config})


def test_config_accepts_rllib_names_and_rejects_bad_values() -> None:
    cfg = APPOConfig.model_validate({"target_update_frequency": 4, "clipParam": 0.3, "use_kl_loss": True})
    assert (cfg.target_network_update_freq, cfg.clip_param, cfg.use_kl_loss) == (4, 0.3, True)
    assert all(f.description for f in APPOConfig.model_fields.values())
    with pytest.raises(ValidationError, match="greater than 0"):
        APPOConfig.model_validate({"clip_param": 0})
    with pytest.raises(ValidationError, match="must not exceed train_batch_size"):
        APPOConfig.model_validate({"train_batch_size": 100, "minibatch_size": 200})


def random_batch(T: int = 6, n: int = 3) -> SampleBatch:
    rng = np.random.default_rng(0)
    return SampleBatch(
        {
            Columns.OBS: rng.normal(size=(T, n, 4)).astype(np.float32),
            Columns.NEXT_OBS: rng.normal(size=(T, n, 4)).astype(np.float32),
            Columns.ACTIONS: rng.integers(0, 2, size=(T, n)),
            Columns.REWARDS: np.ones((T, n), dtype=np.float32),
            Columns.TERMINATEDS: rng.random((T, n)) < 0.1,
            Columns.TRUNCATEDS: np.zeros((T, n), dtype=bool),
        }
    )


def test_loss_on_policy_has_unit_ratio_no_clipping_and_zero_kl() -> None:
    obs_space = gym.spaces.Box(-1.0, 1.0, (4,))
    action_space = gym.spaces.Discrete(2)
    cfg = APPOConfig()
    module = build_model(obs_space, action_space, cfg.model)
    dist = action_distribution(action_space)
    batch = random_batch()
    T, n = batch.shape
    with torch.no_grad():
        dist_in, _ = module(torch.as_tensor(batch[Columns.OBS]).reshape(T * n, 4))
        logp = dist.logp(dist_in, torch.as_tensor(batch[Columns.ACTIONS]).reshape(-1)).reshape(T, n)
    seq = {k: torch.as_tensor(v) for k, v in batch.items()}
    seq[Columns.ACTION_LOGP] = logp
    terms = appo_loss(module, module, dist, seq, config=cfg, kl_coeff=0.0)
    assert terms["mean_rho"].item() == pytest.approx(1.0)
    assert terms["kl"].item() == pytest.approx(0.0, abs=1e-7)
    assert terms["clip_frac"].item() == 0.0
    terms["total_loss"].backward()
    assert all(p.grad is not None for p in module.parameters())


def test_target_network_is_refreshed_every_n_updates() -> None:
    obs_space = gym.spaces.Box(-1.0, 1.0, (4,))
    action_space = gym.spaces.Discrete(2)
    cfg = APPOConfig(target_network_update_freq=2, lr=0.01)
    learner = APPOLearner(
        build_model(obs_space, action_space, cfg.model),
        action_distribution(action_space),
        cfg,
        torch.device("cpu"),
    )
    batch = random_batch()
    batch[Columns.ACTION_LOGP] = np.full(batch.shape, np.log(0.5), dtype=np.float32)
    gen = torch.Generator().manual_seed(0)

    def same() -> bool:
        return all(
            torch.equal(a, b)
            for a, b in zip(learner.module.parameters(), learner.target.parameters(), strict=True)
        )

    assert same()
    learner.update(batch, timesteps=0, generator=gen)
    assert not same()  # one update: π moved, π_target kept
    learner.update(batch, timesteps=0, generator=gen)
    assert same()  # second update: copied
    assert not any(p.requires_grad for p in learner.target.parameters())


def test_in_process_training_and_checkpoint_round_trip(tmp_path: Path) -> None:
    algo = build_algorithm(job(num_epochs=2, minibatch_size=40, use_kl_loss=True), run_dir=tmp_path / "a")
    obs = np.random.default_rng(1).normal(size=(16, 4)).astype(np.float32)
    try:
        result = algo.train()
        stats = result["learner"]["default_policy"]
        for key in ("total_loss", "policy_loss", "vf_loss", "kl", "clip_frac", "policy_lag_mean", "kl_coeff"):
            assert np.isfinite(stats[key]), key
        uri = algo.save(str(tmp_path / "ckpt"))
        expected = algo.compute_actions(obs)
        state = algo.learner.get_state()
    finally:
        algo.stop()
    fresh = build_algorithm(job(num_epochs=2, minibatch_size=40, use_kl_loss=True), run_dir=tmp_path / "b")
    try:
        fresh.restore(uri)
        np.testing.assert_array_equal(fresh.compute_actions(obs), expected)
        restored = fresh.learner.get_state()
        for k, v in state["target"].items():
            torch.testing.assert_close(restored["target"][k], v, rtol=0, atol=0)
        assert restored["kl_coeff"] == state["kl_coeff"]
        assert restored["version"] == state["version"]
        assert fresh.train()["training_iteration"] == 2
    finally:
        fresh.stop()
