"""Ape-X DQN: the epsilon ladder, runner-side initial priorities (equal to the learner's TD error for the
same weights), priorities written back after each update, the replay ratio, asynchronous runners with
policy lag, refused combinations, and a checkpoint round trip."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from pydantic import ValidationError

from kuberl.algorithms.apex import APEX, PRIORITIES, ApexEnvRunner, epsilon_ladder, runner_epsilons
from kuberl.algorithms.families.q_learning import dqn_loss
from kuberl.build import build_algorithm
from kuberl.core.replay import WEIGHTS
from kuberl.core.returns import nstep_transitions
from kuberl.spec import SpecError, parse_job
from kuberl.spec.algorithms.apex import APEXConfig
from tests.fixtures.jobs import job_doc

SMALL: dict[str, Any] = {
    "train_batch_size": 16,
    "rollout_fragment_length": 8,
    "buffer_size": 1000,
    "num_steps_sampled_before_learning_starts": 32,
    "n_step": 3,
    "training_intensity": 4.0,
    "target_network_update_freq": 4,
    "min_sample_timesteps_per_iteration": 64,
    "model": {"fcnet_hiddens": [16]},
}


def job(config: dict[str, Any], *, runners: int = 0, **spec: Any) -> dict[str, Any]:
    return job_doc(
        "APEX",
        "CartPole-v1",
        seed=5,
        name="apex-test",
        config=config,
        runners=runners,
        envs_per_runner=4,
        **spec,
    )


# -- exploration -----------------------------------------------------------------------------------


def test_epsilon_ladder_matches_the_paper() -> None:
    # ε_i = 0.4^(1 + 7·i/(N−1)): the first actor explores with 0.4, the last with 0.4^8
    np.testing.assert_allclose(epsilon_ladder(3, base=0.4, alpha=7.0), [0.4, 0.4**4.5, 0.4**8])
    np.testing.assert_allclose(epsilon_ladder(1, base=0.4, alpha=7.0), [0.4])
    ladder = epsilon_ladder(8, base=0.4, alpha=7.0)
    assert np.all(np.diff(ladder) < 0)
    # the ladder spans every sub-env of every runner: runner 2 of 2 with 4 envs takes rungs 4–7
    np.testing.assert_allclose(
        runner_epsilons(2, num_runners=2, envs_per_runner=4, base=0.4, alpha=7.0), ladder[4:]
    )
    np.testing.assert_allclose(
        runner_epsilons(1, num_runners=2, envs_per_runner=4, base=0.4, alpha=7.0), ladder[:4]
    )
    # the in-driver runner (index 0, envRunners: 0) holds the whole ladder of its sub-envs
    np.testing.assert_allclose(
        runner_epsilons(0, num_runners=0, envs_per_runner=4, base=0.4, alpha=7.0),
        epsilon_ladder(4, base=0.4, alpha=7.0),
    )


def test_each_sub_env_explores_with_its_rung(tmp_path: Path) -> None:
    algo = build_algorithm(job({**SMALL, "epsilon_base": 0.5, "epsilon_alpha": 3.0}), run_dir=tmp_path)
    try:
        runner = algo.runners.local
        assert isinstance(runner, ApexEnvRunner)
        eps = runner.policy.epsilon  # type: ignore[attr-defined]
        np.testing.assert_allclose(np.asarray(eps), epsilon_ladder(4, base=0.5, alpha=3.0), rtol=1e-6)
        # the driver's weight syncs leave the ladder alone (no per-iteration epsilon)
        algo.train()
        np.testing.assert_allclose(np.asarray(runner.policy.epsilon), np.asarray(eps))  # type: ignore[attr-defined]
    finally:
        algo.stop()


# -- priorities ------------------------------------------------------------------------------------


@pytest.mark.parametrize("double_q", [True, False])
def test_runner_priorities_equal_the_learners_td_error_for_the_same_weights(
    tmp_path: Path, double_q: bool
) -> None:
    algo = build_algorithm(job({**SMALL, "double_q": double_q}), run_dir=tmp_path)
    try:
        assert isinstance(algo, APEX)
        runner = algo.runners.local
        assert runner is not None
        rollout = runner.sample()
        priorities = rollout.batch[PRIORITIES]
        T, N = rollout.batch["rewards"].shape
        assert priorities.shape == (T, N)
        # The learner with its target network equal to the online one (the weights the runner holds).
        algo.learner.update_target()
        transitions = nstep_transitions(rollout.batch, n=3, gamma=algo.config.gamma)
        data = {k: torch.as_tensor(v) for k, v in transitions.items()}
        data[WEIGHTS] = torch.ones(T * N)
        with torch.no_grad():
            _, td = dqn_loss(algo.learner.module, algo.learner.target, data, config=algo.config)
        np.testing.assert_allclose(priorities.reshape(-1), td.numpy(), rtol=1e-5, atol=1e-6)
        assert np.ptp(priorities) > 0  # real, per-transition priorities, not one max priority
    finally:
        algo.stop()


def test_new_transitions_enter_with_runner_priorities_and_updates_rewrite_them(tmp_path: Path) -> None:
    config = {**SMALL, "num_steps_sampled_before_learning_starts": 10_000, "buffer_size": 10_000}
    algo = build_algorithm(job(config), run_dir=tmp_path)
    try:
        assert isinstance(algo, APEX)
        algo.train()  # below learning starts: replay only
        assert algo.num_updates == 0
        n = len(algo.buffer)
        assert n >= 64
        stored = algo.buffer.priorities(np.arange(n))
        alpha, eps = algo.config.prioritized_replay_alpha, algo.config.prioritized_replay_eps
        assert np.ptp(stored) > 0  # each transition at its own |TD error|, not at the max priority
        assert np.all(stored >= eps**alpha)
        # Now learn: the priorities of replayed transitions change to the learner's |TD error|.
        algo.config = algo.config.model_copy(update={"num_steps_sampled_before_learning_starts": 0})
        before = stored.copy()
        result = algo.train()
        assert result["learner"]["default_policy"]["num_updates"] > 0
        after = algo.buffer.priorities(np.arange(n))
        assert np.sum(~np.isclose(before, after)) > 0
        # p_i = (|δ_i| + eps)^α for every stored priority
        assert np.all(after >= eps**alpha)
    finally:
        algo.stop()


def test_without_worker_side_prioritization_new_transitions_get_max_priority(tmp_path: Path) -> None:
    config = {**SMALL, "worker_side_prioritization": False, "num_steps_sampled_before_learning_starts": 1000}
    algo = build_algorithm(job(config), run_dir=tmp_path)
    try:
        assert isinstance(algo, APEX)
        algo.train()
        stored = algo.buffer.priorities(np.arange(len(algo.buffer)))
        np.testing.assert_allclose(stored, 1.0)  # max priority 1^α before any update
    finally:
        algo.stop()


# -- the learner -----------------------------------------------------------------------------------


def test_replay_ratio_and_target_updates(tmp_path: Path) -> None:
    config = {**SMALL, "num_steps_sampled_before_learning_starts": 0}
    algo = build_algorithm(job(config), run_dir=tmp_path)
    try:
        assert isinstance(algo, APEX)
        for _ in range(3):
            result = algo.train()
        # intensity 4, batch 16: one update per 4 env steps sampled, at most one update owed
        owed = 4.0 * algo.timesteps / 16
        assert owed - 1 < algo.num_updates <= owed
        assert result["num_env_steps_trained"] == result["learner"]["default_policy"]["num_updates"] * 16
        assert algo.num_target_updates == algo.num_updates // 4
        stats = result["learner"]["default_policy"]
        for key in ("total_loss", "td_error_abs", "policy_lag_mean", "policy_lag_max", "weights_version"):
            assert key in stats
        assert stats["weights_version"] == algo.num_updates
    finally:
        algo.stop()


@pytest.mark.usefixtures("ray_session")
def test_two_async_runners_report_policy_lag_and_learn(tmp_path: Path) -> None:
    config = {**SMALL, "num_steps_sampled_before_learning_starts": 0, "broadcast_interval": 2}
    algo = build_algorithm(job(config, runners=2), run_dir=tmp_path)
    try:
        assert isinstance(algo, APEX)
        results = [algo.train() for _ in range(3)]
        stats = results[-1]["learner"]["default_policy"]
        assert stats["num_updates"] > 0
        assert 0 <= stats["policy_lag_mean"] <= stats["policy_lag_max"]
        assert algo.sampler.in_flight == 2 * algo.config.max_requests_in_flight_per_env_runner
        # the learner broadcast at least once: runners sampled with versions past the initial sync
        assert algo.broadcast_version > 0
        assert results[-1]["env_runners"]["num_healthy"] == 2
    finally:
        algo.stop()


# -- config ----------------------------------------------------------------------------------------


def test_config_joins_the_union_with_rllib_names() -> None:
    cfg = parse_job(job({"learning_starts": 10, "capacity": 500, "trainBatchSize": 8})).spec.config
    assert isinstance(cfg, APEXConfig)
    assert (cfg.num_steps_sampled_before_learning_starts, cfg.buffer_size, cfg.train_batch_size) == (
        10,
        500,
        8,
    )
    assert (cfg.epsilon_base, cfg.epsilon_alpha, cfg.n_step) == (0.4, 7.0, 3)


@pytest.mark.parametrize(
    ("config", "message"),
    [
        ({"buffer_size": 100, "learning_starts": 200}, "must not exceed buffer_size"),
        ({"n_step": 5, "rollout_fragment_length": 4}, "cut at the end of each fragment"),
        ({"epsilon_base": 1.0}, "epsilon_base"),
        ({"model": {"use_lstm": True}}, "cannot train a recurrent policy"),
    ],
)
def test_config_rejects_unsupported_settings(config: dict[str, Any], message: str) -> None:
    with pytest.raises(ValidationError, match=message):
        APEXConfig.model_validate(config)


def test_multi_agent_and_several_learners_are_refused() -> None:
    doc = job(SMALL)
    doc["spec"]["resources"]["learners"] = 2
    with pytest.raises(SpecError) as err:
        parse_job(doc)
    assert (
        "APEX does not support data-parallel learners" in dict(err.value.problems)["spec.resources.learners"]
    )
    ma = job(SMALL, multiAgent={})
    ma["spec"]["env"] = "kuberl.multi_agent.envs:coop_match"
    with pytest.raises(SpecError) as err:
        parse_job(ma)
    assert "APEX does not run multi-agent" in " ".join(dict(err.value.problems).values())


# -- checkpoints -----------------------------------------------------------------------------------


def test_checkpoint_restores_learner_counters_and_buffer(tmp_path: Path) -> None:
    config = {**SMALL, "num_steps_sampled_before_learning_starts": 0, "store_buffer_in_checkpoints": True}
    algo = build_algorithm(job(config), run_dir=tmp_path / "a")
    fresh = build_algorithm(job(config), run_dir=tmp_path / "b")
    try:
        assert isinstance(algo, APEX)
        assert isinstance(fresh, APEX)
        for _ in range(2):
            algo.train()
        uri = algo.save(str(tmp_path / "ckpt"))
        fresh.restore(uri)
        assert fresh.num_updates == algo.num_updates > 0
        assert fresh.num_target_updates == algo.num_target_updates
        assert fresh.update_credit == algo.update_credit
        for key, value in algo.learner.module.state_dict().items():
            torch.testing.assert_close(fresh.learner.module.state_dict()[key], value)
        for key, value in algo.learner.target.state_dict().items():
            torch.testing.assert_close(fresh.learner.target.state_dict()[key], value)
        n = len(algo.buffer)
        assert len(fresh.buffer) == n
        np.testing.assert_allclose(
            fresh.buffer.priorities(np.arange(n)), algo.buffer.priorities(np.arange(n))
        )
        obs = np.random.default_rng(0).normal(size=(16, 4)).astype(np.float32)
        np.testing.assert_array_equal(fresh.compute_actions(obs), algo.compute_actions(obs))
    finally:
        algo.stop()
        fresh.stop()
