"""DDPG: one critic, no smoothing or delay (the TD3-only settings are refused with a reason), actor and
targets updated every step, checkpoint round trip."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import gymnasium as gym
import numpy as np
import pytest
import torch
from pydantic import ValidationError

from kuberl.algorithms.ddpg import DDPG, DDPGLearner, ddpg_target
from kuberl.build import build_algorithm
from kuberl.spec import SpecError, parse_job
from kuberl.spec.algorithms import ModelConfig
from kuberl.spec.algorithms.ddpg import DDPGConfig
from tests.fixtures.offpolicy import SMALL, offpolicy_job, pendulum_minibatch


def job(tmp_path: Path, **config: Any) -> dict[str, Any]:
    return offpolicy_job(tmp_path, "DDPG", seed=2, **config)


def test_td3_only_settings_are_refused_with_a_reason() -> None:
    for field in ("twin_q", "policyDelay", "smooth_target_policy", "targetNoise"):
        with pytest.raises(ValidationError, match="use algorithm TD3"):
            DDPGConfig.model_validate({field: 1})
    with pytest.raises(SpecError, match="use algorithm TD3"):
        parse_job(job(Path("/tmp"), twinQ=True))


def test_single_critic_target_and_every_step_actor_update() -> None:
    mb = {
        "rewards": torch.tensor([1.0, 2.0]),
        "discounts": torch.tensor([0.5, 0.5]),
        "terminateds": torch.tensor([False, True]),
    }
    torch.testing.assert_close(ddpg_target(mb, torch.tensor([[4.0, 4.0]])), torch.tensor([3.0, 2.0]))
    learner = DDPGLearner(
        gym.spaces.Box(-1.0, 1.0, (3,)),
        gym.spaces.Box(-2.0, 2.0, (1,)),
        DDPGConfig(model=ModelConfig(**SMALL)),
        torch.device("cpu"),
    )
    assert learner.critic.net.members == 1
    actor0 = [p.clone() for p in learner.actor.parameters()]
    terms = learner.update(pendulum_minibatch(16, terminal_every_other=False, discount=0.98))
    assert "actor_loss" in terms
    assert any(not torch.equal(a, b) for a, b in zip(actor0, learner.actor.parameters(), strict=True))


def test_train_with_ou_noise_then_save_restore_gives_identical_actions(tmp_path: Path) -> None:
    algo = build_algorithm(job(tmp_path, exploration_config={"type": "OrnsteinUhlenbeckNoise"}))
    assert isinstance(algo, DDPG)
    try:
        for _ in range(3):
            algo.train()
        uri = algo.save(str(tmp_path / "ckpt"))
        obs = np.stack([algo.obs_space.sample() for _ in range(5)])
        expected = algo.compute_actions(obs)
    finally:
        algo.stop()
    fresh = build_algorithm(job(tmp_path, exploration_config={"type": "OrnsteinUhlenbeckNoise"}))
    assert isinstance(fresh, DDPG)
    try:
        fresh.restore(uri)
        np.testing.assert_array_equal(fresh.compute_actions(obs), expected)
        assert len(fresh.buffer) == 0  # replay is left out of checkpoints unless storeBufferInCheckpoints
    finally:
        fresh.stop()
