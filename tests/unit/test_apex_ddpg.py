"""Ape-X DDPG: each sub-env explores with its rung of the noise ladder, new transitions enter replay at the
learner's |TD error|, updates rewrite priorities at the replay ratio, the actor is broadcast to
asynchronous runners, refused settings name their field, and a checkpoint round trip."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from pydantic import ValidationError

from kuberl.algorithms.apex_ddpg import APEX_DDPG
from kuberl.algorithms.families.distributed_replay import LadderEnvRunner, exploration_ladder
from kuberl.build import build_algorithm
from kuberl.core.returns import nstep_transitions
from kuberl.spec import SpecError, parse_job
from kuberl.spec.algorithms.apex_ddpg import APEX_DDPGConfig
from tests.fixtures.jobs import job_doc

SMALL: dict[str, Any] = {
    "train_batch_size": 16,
    "rollout_fragment_length": 8,
    "replay_buffer_config": {"type": "PrioritizedReplayBuffer", "capacity": 1000},
    "num_steps_sampled_before_learning_starts": 32,
    "n_step": 3,
    "training_intensity": 4.0,
    "min_sample_timesteps_per_iteration": 64,
    "model": {"fcnet_hiddens": [16]},
}


def job(config: dict[str, Any], *, runners: int = 0, **spec: Any) -> dict[str, Any]:
    return job_doc(
        "APEX_DDPG",
        "Pendulum-v1",
        seed=3,
        name="apex-ddpg-test",
        config=config,
        runners=runners,
        envs_per_runner=4,
        **spec,
    )


# -- exploration -----------------------------------------------------------------------------------


def test_each_sub_env_explores_with_its_rung_of_the_noise_ladder(tmp_path: Path) -> None:
    config = {
        **SMALL,
        "noise_scale_base": 0.5,
        "noise_scale_alpha": 3.0,
        "exploration_config": {"stddev": 0.4},
    }
    algo = build_algorithm(job(config), run_dir=tmp_path)
    try:
        runner = algo.runners.local
        assert isinstance(runner, LadderEnvRunner)
        ladder = exploration_ladder(4, base=0.5, alpha=3.0)
        scale = runner.policy.noise_scale  # type: ignore[attr-defined]
        np.testing.assert_allclose(np.asarray(scale).reshape(-1), ladder, rtol=1e-6)
        algo.train()  # past learning starts: the driver's syncs turn random actions off, not the ladder
        policy = runner.policy
        assert policy.random_actions is False  # type: ignore[attr-defined]
        np.testing.assert_allclose(np.asarray(policy.noise_scale).reshape(-1), ladder, rtol=1e-6)  # type: ignore[attr-defined]
        # The noise each sub-env adds is its rung × stddev: measured over many steps of one observation.
        obs = torch.zeros(4, 3).repeat(2000, 1)
        policy.set_options({"noise_scale": np.tile(ladder, 2000)})  # type: ignore[attr-defined]
        gen = torch.Generator().manual_seed(0)
        with torch.no_grad():
            clean = policy.act(obs, explore=False, generator=gen)["actions"]  # type: ignore[attr-defined]
            noisy = policy.act(obs, explore=True, generator=gen)["actions"]  # type: ignore[attr-defined]
        # Pendulum's torque is [-2, 2]: the [-1, 1] noise is doubled.
        std = ((noisy - clean) / 2.0).reshape(2000, 4).std(0).numpy()
        np.testing.assert_allclose(std, 0.4 * ladder, rtol=0.1, atol=2e-3)
    finally:
        algo.stop()


def test_actions_are_random_until_learning_starts(tmp_path: Path) -> None:
    config = {
        **SMALL,
        "num_steps_sampled_before_learning_starts": 1000,
        "replay_buffer_config": {"capacity": 2000},
    }
    algo = build_algorithm(job(config), run_dir=tmp_path)
    try:
        algo.train()
        runner = algo.runners.local
        assert runner is not None
        assert runner.policy.random_actions is True  # type: ignore[attr-defined]
        actions = algo.buffer.state()["storage"]["actions"][: len(algo.buffer)]
        # uniform over [-2, 2], not the untrained actor's near-constant output plus small noise
        assert actions.std() > 0.9
    finally:
        algo.stop()


# -- priorities ------------------------------------------------------------------------------------


def test_new_transitions_enter_at_the_learners_td_error(tmp_path: Path) -> None:
    config = {
        **SMALL,
        "num_steps_sampled_before_learning_starts": 10_000,
        "replay_buffer_config": {"capacity": 10_000},
    }
    algo = build_algorithm(job(config), run_dir=tmp_path)
    try:
        assert isinstance(algo, APEX_DDPG)
        runner = algo.runners.local
        assert runner is not None
        rollout = runner.sample()
        transitions = nstep_transitions(rollout.batch, n=3, gamma=algo.config.gamma)
        before = len(algo.buffer)
        algo.add_to_replay(rollout.batch, None)
        idx = np.arange(before, len(algo.buffer))
        # |Q(s,a) − (r + γ^k Q'(s', μ'(s')))| by hand, under the learner's networks
        lrn = algo.learner
        data = {k: torch.as_tensor(v) for k, v in transitions.items()}
        with torch.no_grad():
            nxt = data["next_obs"]
            target = (
                data["rewards"]
                + data["discounts"]
                * (~data["terminateds"]).float()
                * lrn.target_critic(nxt, lrn.target_actor(nxt))[0]
            )
            q = lrn.critic(data["obs"], lrn.scaler.from_env(data["actions"]))[0]
        expected = (np.abs((q - target).numpy()) + algo.buffer.eps) ** algo.buffer.alpha
        np.testing.assert_allclose(algo.buffer.priorities(idx), expected, rtol=1e-5)
        assert np.ptp(algo.buffer.priorities(idx)) > 0  # per transition, not one max priority
    finally:
        algo.stop()


def test_updates_rewrite_priorities_at_the_replay_ratio(tmp_path: Path) -> None:
    algo = build_algorithm(job({**SMALL, "num_steps_sampled_before_learning_starts": 0}), run_dir=tmp_path)
    try:
        assert isinstance(algo, APEX_DDPG)
        algo.train()
        n = len(algo.buffer)
        before = algo.buffer.priorities(np.arange(n)).copy()
        for _ in range(2):
            result = algo.train()
        # intensity 4, batch 16: one update per 4 env steps sampled, at most one update owed
        owed = 4.0 * algo.timesteps / 16
        assert owed - 1 < algo.num_updates <= owed
        assert algo.learner.num_updates == algo.num_updates
        stats = result["learner"]["default_policy"]
        assert result["num_env_steps_trained"] == stats["num_updates"] * 16
        for key in ("critic_loss", "actor_loss", "q_mean", "policy_lag_mean", "weights_version"):
            assert key in stats
        after = algo.buffer.priorities(np.arange(n))
        assert np.sum(~np.isclose(before, after)) > 0
    finally:
        algo.stop()


@pytest.mark.usefixtures("ray_session")
def test_two_async_runners_sample_on_their_rungs_and_get_broadcasts(tmp_path: Path) -> None:
    config = {**SMALL, "num_steps_sampled_before_learning_starts": 0, "broadcast_interval": 2}
    algo = build_algorithm(job(config, runners=2), run_dir=tmp_path)
    try:
        assert isinstance(algo, APEX_DDPG)
        results = [algo.train() for _ in range(3)]
        stats = results[-1]["learner"]["default_policy"]
        assert stats["num_updates"] > 0
        assert 0 <= stats["policy_lag_mean"] <= stats["policy_lag_max"]
        assert algo.broadcast_version > 0
        assert results[-1]["env_runners"]["num_healthy"] == 2
    finally:
        algo.stop()


# -- config ----------------------------------------------------------------------------------------


def test_config_defaults_and_rllib_names() -> None:
    cfg = parse_job(job({"learning_starts": 10, "trainBatchSize": 8})).spec.config
    assert isinstance(cfg, APEX_DDPGConfig)
    assert (cfg.num_steps_sampled_before_learning_starts, cfg.train_batch_size, cfg.n_step) == (10, 8, 3)
    assert cfg.replay_buffer_config.type == "PrioritizedReplayBuffer"
    assert (cfg.noise_scale_base, cfg.noise_scale_alpha) == (0.4, 7.0)


@pytest.mark.parametrize(
    ("config", "message"),
    [
        ({"replay_buffer_config": {"type": "ReplayBuffer"}}, "PrioritizedReplayBuffer"),
        ({"exploration_config": {"final_scale": 0.1}}, "noise_scale_base"),
        ({"twin_q": True}, "use algorithm TD3"),
        ({"noise_scale_base": 0.0}, "noise_scale_base"),
    ],
)
def test_config_rejects_unsupported_settings(config: dict[str, Any], message: str) -> None:
    with pytest.raises(ValidationError, match=message):
        APEX_DDPGConfig.model_validate(config)


def test_discrete_actions_multi_agent_and_several_learners_are_refused() -> None:
    doc = job(SMALL)
    doc["spec"]["resources"]["learners"] = 2
    with pytest.raises(SpecError) as err:
        parse_job(doc)
    assert (
        "APEX_DDPG does not support data-parallel learners"
        in dict(err.value.problems)["spec.resources.learners"]
    )
    ma = job(SMALL, multiAgent={})
    ma["spec"]["env"] = "kuberl.multi_agent.envs:coop_match"
    with pytest.raises(SpecError) as err:
        parse_job(ma)
    assert "APEX_DDPG does not run multi-agent" in " ".join(dict(err.value.problems).values())


# -- checkpoints -----------------------------------------------------------------------------------


def test_checkpoint_restores_learner_counters_and_buffer(tmp_path: Path) -> None:
    config = {**SMALL, "num_steps_sampled_before_learning_starts": 0, "store_buffer_in_checkpoints": True}
    algo = build_algorithm(job(config), run_dir=tmp_path / "a")
    fresh = build_algorithm(job(config), run_dir=tmp_path / "b")
    try:
        assert isinstance(algo, APEX_DDPG)
        assert isinstance(fresh, APEX_DDPG)
        for _ in range(2):
            algo.train()
        uri = algo.save(str(tmp_path / "ckpt"))
        fresh.restore(uri)
        assert fresh.num_updates == algo.num_updates > 0
        assert fresh.update_credit == algo.update_credit
        for name in ("actor", "critic", "target_actor", "target_critic"):
            for key, value in getattr(algo.learner, name).state_dict().items():
                torch.testing.assert_close(getattr(fresh.learner, name).state_dict()[key], value)
        n = len(algo.buffer)
        assert len(fresh.buffer) == n
        np.testing.assert_allclose(
            fresh.buffer.priorities(np.arange(n)), algo.buffer.priorities(np.arange(n))
        )
        obs = np.random.default_rng(0).normal(size=(16, 3)).astype(np.float32)
        np.testing.assert_array_equal(fresh.compute_actions(obs), algo.compute_actions(obs))
    finally:
        algo.stop()
        fresh.stop()
