"""SAC: the squashed-Gaussian log-likelihood, the temperature loss, discrete SAC's expectations, Polyak
targets, config validation, and checkpoint round trips (envRunners: 0, a few hundred steps)."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import gymnasium as gym
import numpy as np
import pytest
import torch
from pydantic import ValidationError

from kuberl.algorithms.sac import SAC, SACLearner, alpha_loss, discrete_expectations
from kuberl.build import build_algorithm
from kuberl.core.networks import SquashedGaussianActor
from kuberl.spec import parse_job
from kuberl.spec.algorithms import ModelConfig
from kuberl.spec.algorithms.sac import SACConfig
from tests.fixtures.offpolicy import SMALL, offpolicy_job


def job(tmp_path: Path, env: str = "Pendulum-v1", **config: Any) -> dict[str, Any]:
    return offpolicy_job(tmp_path, "SAC", seed=3, env=env, **config)


def test_squashed_gaussian_logp_matches_change_of_variables() -> None:
    torch.manual_seed(0)
    actor = SquashedGaussianActor(3, 2, ModelConfig(**SMALL))
    obs = torch.randn(64, 3)
    a, logp = actor.sample(obs)
    assert a.abs().max() < 1.0
    mean, log_std = actor(obs)
    u = torch.atanh(a.clamp(-1 + 1e-6, 1 - 1e-6))
    base = torch.distributions.Normal(mean, log_std.exp()).log_prob(u).sum(-1)
    ref = base - torch.log(1 - a.pow(2) + 1e-12).sum(-1)
    torch.testing.assert_close(logp, ref, atol=2e-3, rtol=1e-3)


def test_alpha_loss_sign_moves_alpha_towards_target_entropy() -> None:
    log_alpha = torch.zeros((), requires_grad=True)
    # Entropy above the target: the gradient must lower alpha (positive d loss / d log alpha).
    alpha_loss(log_alpha, torch.full((8,), 2.0), target_entropy=-1.0)["alpha_loss"].backward()
    assert log_alpha.grad is not None
    assert log_alpha.grad > 0
    log_alpha.grad = None
    alpha_loss(log_alpha, torch.full((8,), -3.0), target_entropy=-1.0)["alpha_loss"].backward()
    assert log_alpha.grad is not None
    assert log_alpha.grad < 0


def test_target_entropy_defaults() -> None:
    box = gym.spaces.Box(-2.0, 2.0, (3,))
    obs = gym.spaces.Box(-1.0, 1.0, (4,))
    assert SACLearner(obs, box, SACConfig(), torch.device("cpu")).target_entropy == -3.0
    disc = SACLearner(obs, gym.spaces.Discrete(4), SACConfig(), torch.device("cpu"))
    assert disc.target_entropy == pytest.approx(0.98 * math.log(4))
    fixed = SACLearner(obs, box, SACConfig(target_entropy=-0.5), torch.device("cpu"))
    assert fixed.target_entropy == -0.5


def test_discrete_expectations_against_hand_values() -> None:
    logits = torch.log(torch.tensor([[0.5, 0.25, 0.25]]))
    q = torch.tensor([[1.0, 2.0, 4.0]])
    alpha = torch.tensor(0.5)
    v, entropy = discrete_expectations(logits, q, alpha)
    p = np.array([0.5, 0.25, 0.25])
    h = -(p * np.log(p)).sum()
    torch.testing.assert_close(entropy, torch.tensor([h], dtype=torch.float32))
    # V = Σ p (Q − α log p) = E_p[Q] + α H
    torch.testing.assert_close(v, torch.tensor([0.5 + 0.5 + 1.0 + 0.5 * h], dtype=torch.float32))


def test_update_moves_target_critic_by_polyak_tau() -> None:
    cfg = SACConfig(model=ModelConfig(**SMALL), tau=0.1)
    obs_space, act_space = gym.spaces.Box(-1.0, 1.0, (3,)), gym.spaces.Box(-2.0, 2.0, (1,))
    learner = SACLearner(obs_space, act_space, cfg, torch.device("cpu"))
    before = [p.clone() for p in learner.target_critic.parameters()]
    mb = {
        "obs": torch.randn(16, 3),
        "actions": torch.rand(16, 1) * 4 - 2,
        "rewards": torch.randn(16),
        "next_obs": torch.randn(16, 3),
        "terminateds": torch.zeros(16, dtype=torch.bool),
        "discounts": torch.full((16,), 0.99),
        "weights": torch.ones(16),
    }
    learner.update(mb)
    for old, new, src in zip(
        before, learner.target_critic.parameters(), learner.critic.parameters(), strict=True
    ):
        torch.testing.assert_close(new, 0.9 * old + 0.1 * src.detach())
    assert not any(p.requires_grad for p in learner.target_critic.parameters())


def test_config_rejects_inconsistent_settings() -> None:
    with pytest.raises(ValidationError, match="tune_alpha is false"):
        SACConfig(tune_alpha=False, alpha_lr=1e-3)
    with pytest.raises(ValidationError, match="only one of updates_per_step and training_intensity"):
        SACConfig(updates_per_step=1.0, training_intensity=256.0)
    with pytest.raises(ValidationError, match="n_step"):
        SACConfig(n_step=10, rollout_fragment_length=4)
    with pytest.raises(ValidationError, match=r"exceeds replay_buffer_config\.capacity"):
        SACConfig(train_batch_size=512, replay_buffer_config={"capacity": 100})
    # RLlib names are accepted.
    doc = job(Path("/tmp"), initial_alpha=0.2, twin_q=False, train_batch_size=64)
    del doc["spec"]["config"]["trainBatchSize"]
    cfg = parse_job(doc).spec.config
    assert isinstance(cfg, SACConfig)
    assert (cfg.initial_alpha, cfg.twin_q, cfg.train_batch_size) == (0.2, False, 64)
    assert cfg.num_steps_sampled_before_learning_starts == 100  # given as learningStarts (SB3's name)


@pytest.mark.parametrize("env", ["Pendulum-v1", "CartPole-v1"])
def test_train_then_save_restore_gives_identical_actions(tmp_path: Path, env: str) -> None:
    algo = build_algorithm(job(tmp_path, env, storeBufferInCheckpoints=True))
    assert isinstance(algo, SAC)
    try:
        for _ in range(4):
            result = algo.train()
        stats = result["learner"]["default_policy"]
        for key in ("critic_loss", "actor_loss", "alpha_loss", "alpha", "q_mean", "entropy"):
            assert math.isfinite(stats[key]), key
        uri = algo.save(str(tmp_path / "ckpt"))
        obs = np.stack([algo.obs_space.sample() for _ in range(5)])
        expected = algo.compute_actions(obs)
        n_replay = len(algo.buffer)
    finally:
        algo.stop()

    fresh = build_algorithm(job(tmp_path, env, storeBufferInCheckpoints=True))
    assert isinstance(fresh, SAC)
    try:
        fresh.restore(uri)
        np.testing.assert_array_equal(fresh.compute_actions(obs), expected)
        assert len(fresh.buffer) == n_replay
        assert fresh.timesteps == 400
        torch.testing.assert_close(
            fresh.learner.log_alpha, torch.as_tensor(stats["alpha"]).log(), atol=0.05, rtol=0
        )  # logged alpha is the value before the iteration's last step
        # Both continue identically: same next iteration.
        fresh.train()
    finally:
        fresh.stop()


def test_replay_left_out_of_checkpoints_by_default(tmp_path: Path) -> None:
    algo = build_algorithm(job(tmp_path))
    try:
        algo.train()
        assert "replay" not in algo.algorithm_state()
    finally:
        algo.stop()


def test_prioritized_replay_and_n_step_train_and_write_priorities(tmp_path: Path) -> None:
    algo = build_algorithm(
        job(tmp_path, replay_buffer_config={"type": "PrioritizedReplayBuffer", "capacity": 1000}, n_step=3)
    )
    assert isinstance(algo, SAC)
    try:
        for _ in range(3):
            stats = algo.train()["learner"]["default_policy"]
        assert math.isfinite(stats["critic_loss"])
        priorities = algo.buffer.priorities(np.arange(len(algo.buffer)))
        assert len(np.unique(np.round(priorities, 6))) > 10  # TD errors were written back
    finally:
        algo.stop()
