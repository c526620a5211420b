"""TD3 and its target policy smoothing, delayed updates, Polyak targets, exploration noise, config
validation and checkpoint round trips (envRunners: 0, a few hundred steps)."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import gymnasium as gym
import numpy as np
import pytest
import torch
from pydantic import ValidationError

from kuberl.algorithms.families.continuous import DeterministicActorPolicy
from kuberl.algorithms.td3 import TD3, TD3Learner, target_policy_smoothing, td3_target
from kuberl.build import build_algorithm
from kuberl.core.networks import ActionScaler
from kuberl.spec import parse_job
from kuberl.spec.algorithms import ModelConfig
from kuberl.spec.algorithms.td3 import TD3Config
from tests.fixtures.offpolicy import SMALL, offpolicy_job, pendulum_minibatch


def job(tmp_path: Path, **config: Any) -> dict[str, Any]:
    return offpolicy_job(tmp_path, "TD3", seed=5, **config)


def test_target_policy_smoothing_clips_noise_and_actions() -> None:
    gen = torch.Generator().manual_seed(0)
    actions = torch.tensor([-1.0, -0.9, 0.0, 0.5, 0.95, 1.0]).repeat(2000).unsqueeze(-1)
    smoothed = target_policy_smoothing(actions, noise=2.0, noise_clip=0.3, generator=gen)
    assert smoothed.min() >= -1.0
    assert smoothed.max() <= 1.0
    inside = actions.abs() <= 0.7  # far enough from the bounds that only the noise clip applies
    noise = (smoothed - actions)[inside]
    assert noise.abs().max() <= 0.3 + 1e-6
    assert (noise.abs() > 0.299).float().mean() > 0.5  # σ ≫ c: most draws hit the clip
    # Actions at the bound never leave it.
    assert smoothed[actions == 1.0].max() <= 1.0
    zero = target_policy_smoothing(actions, noise=0.0, noise_clip=0.5, generator=gen)
    torch.testing.assert_close(zero, actions)


def test_td3_target_uses_min_of_twins_and_no_bootstrap_on_termination() -> None:
    mb = {
        "rewards": torch.tensor([1.0, 1.0]),
        "discounts": torch.tensor([0.9, 0.81]),
        "terminateds": torch.tensor([False, True]),
    }
    next_q = torch.tensor([[10.0, 10.0], [5.0, 20.0]])
    torch.testing.assert_close(td3_target(mb, next_q), torch.tensor([1.0 + 0.9 * 5.0, 1.0]))


def test_actor_and_targets_update_every_policy_delay_steps() -> None:
    cfg = TD3Config(model=ModelConfig(**SMALL), policy_delay=3, tau=0.5)
    learner = TD3Learner(
        gym.spaces.Box(-1.0, 1.0, (3,)), gym.spaces.Box(-2.0, 2.0, (1,)), cfg, torch.device("cpu")
    )
    actor0 = [p.clone() for p in learner.actor.parameters()]
    target0 = [p.clone() for p in learner.target_critic.parameters()]
    for step in range(1, 4):
        terms = learner.update(pendulum_minibatch())
        moved = any(not torch.equal(a, b) for a, b in zip(actor0, learner.actor.parameters(), strict=True))
        assert moved == (step == 3)
        assert ("actor_loss" in terms) == (step == 3)
    # Polyak via the target module: θ' = τθ + (1−τ)θ'₀ after the one delayed update.
    for old, new, src in zip(
        target0, learner.target_critic.parameters(), learner.critic.parameters(), strict=True
    ):
        torch.testing.assert_close(new, 0.5 * old + 0.5 * src.detach())


def test_exploration_policy_noise_stays_in_bounds_and_warmup_is_uniform() -> None:
    space = gym.spaces.Box(-2.0, 2.0, (1,))
    obs_space = gym.spaces.Box(-1.0, 1.0, (3,))
    gen = torch.Generator().manual_seed(0)
    for kind in ("GaussianNoise", "OrnsteinUhlenbeckNoise"):
        pol = DeterministicActorPolicy(
            obs_space,
            space,
            ModelConfig(**SMALL),
            {"exploration": {"type": kind, "stddev": 5.0, "ou_base_scale": 5.0}},
        )
        pol.set_options({"random_actions": False})
        obs = torch.randn(256, 3)
        a = pol.act(obs, explore=True, generator=gen)["actions"]
        assert a.min() >= -2.0
        assert a.max() <= 2.0
        greedy = pol.act(obs, explore=False, generator=gen)["actions"]
        torch.testing.assert_close(greedy, ActionScaler(space).to_env(pol.actor(obs)))
    pol.set_options({"random_actions": True})
    warm = pol.act(torch.randn(4000, 3), explore=True, generator=gen)["actions"]
    assert abs(float(warm.mean())) < 0.1
    assert float(warm.min()) < -1.9
    assert float(warm.max()) > 1.9


def test_config_validation_and_rllib_names() -> None:
    with pytest.raises(ValidationError, match="lr_schedule"):
        TD3Config.model_validate({"lrSchedule": [[0, 1e-3]]})
    with pytest.raises(ValidationError, match="policy_delay"):
        TD3Config(policy_delay=0)
    cfg = parse_job(
        job(Path("/tmp"), twin_q=False, target_noise=0.1, exploration_config={"stddev": 0.3})
    ).spec.config
    assert isinstance(cfg, TD3Config)
    assert (cfg.twin_q, cfg.target_noise, cfg.exploration_config.stddev) == (False, 0.1, 0.3)


def test_train_then_save_restore_gives_identical_actions(tmp_path: Path) -> None:
    algo = build_algorithm(job(tmp_path, storeBufferInCheckpoints=True))
    assert isinstance(algo, TD3)
    try:
        for _ in range(4):
            result = algo.train()
        stats = result["learner"]["default_policy"]
        for key in ("critic_loss", "actor_loss", "q_mean", "target_q_mean"):
            assert math.isfinite(stats[key]), key
        uri = algo.save(str(tmp_path / "ckpt"))
        obs = np.stack([algo.obs_space.sample() for _ in range(5)])
        expected = algo.compute_actions(obs)
        state = algo.learner.get_state()
    finally:
        algo.stop()
    fresh = build_algorithm(job(tmp_path, storeBufferInCheckpoints=True))
    assert isinstance(fresh, TD3)
    try:
        fresh.restore(uri)
        np.testing.assert_array_equal(fresh.compute_actions(obs), expected)
        assert fresh.learner.num_updates == state["num_updates"]
        for k, v in state["target_actor"].items():
            torch.testing.assert_close(fresh.learner.target_actor.state_dict()[k], v)
        assert len(fresh.buffer) == 400
        fresh.train()
    finally:
        fresh.stop()


def test_runner_policy_takes_warmup_and_noise_scale_from_the_driver() -> None:
    import gymnasium as gym

    from kuberl.algorithms.families.continuous import DeterministicActorPolicy
    from kuberl.spec import ModelConfig
    from kuberl.spec.algorithms.td3 import TD3Config

    env = gym.make("Pendulum-v1")
    policy = DeterministicActorPolicy(
        env.observation_space,
        env.action_space,
        ModelConfig(),
        {"exploration": TD3Config().exploration_config.model_dump()},
    )
    policy.set_options({"random_actions": False, "noise_scale": 0.25})
    assert policy.random_actions is False
    assert policy.noise_scale == 0.25
    assert policy.value(None) is None  # type: ignore[arg-type]
