"""MultiAgentAlgorithm: frozen policies, checkpoints (policies and the self-play pool), Ray runners,
metrics with a `policy` label, and a whole `kuberl run` through the trainer."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from kuberl.algorithms.base import Algorithm
from kuberl.algorithms.ppo import PPO
from kuberl.build import build_algorithm
from kuberl.evaluate import rollout_checkpoint
from kuberl.metrics import TrainerMetrics
from kuberl.multi_agent.algorithm import MultiAgentAlgorithm
from kuberl.record import record_checkpoint
from kuberl.spec import parse_job
from kuberl.trainer import run_job
from tests.fixtures.jobs import job_doc
from tests.fixtures.multi_agent import (
    SMALL_PPO,
    TWO_POLICIES,
    build_multi_agent,
    coop_doc,
    copy_weights,
    weights_equal,
)


def selfplay_doc(tmp_path: Path, **spec: Any) -> dict[str, Any]:
    own = {
        "metrics": {"enabled": False},
        "multiAgent": {
            "policies": {"main": {}, "opponent": {"trainable": False}},
            "selfPlay": {
                "policy": "main",
                "opponentPolicy": "opponent",
                "snapshotEveryIterations": 1,
                "poolSize": 2,
                "randomOpponentProbability": 0.2,
                "evaluationGames": 20,
            },
        },
    }
    return job_doc(
        "PPO",
        "classic/tictactoe-v3",
        seed=0,
        name="ma-ttt",
        run_dir=tmp_path,
        config=SMALL_PPO,
        **{**own, **spec},
    )


def test_frozen_policy_is_unchanged_by_training(tmp_path: Path) -> None:
    algo = build_multi_agent(coop_doc(tmp_path, TWO_POLICIES))
    try:
        fixed0, learner0 = (
            copy_weights(algo.subs["fixed"].get_weights()),
            copy_weights(algo.subs["learner"].get_weights()),
        )
        for _ in range(2):
            result = algo.train()
        assert weights_equal(algo.subs["fixed"].get_weights(), fixed0)
        assert not weights_equal(algo.subs["learner"].get_weights(), learner0)
        assert list(result["learner"]) == ["learner"]
        assert result["policies"]["fixed"]["trained"] is False
        assert result["policies"]["fixed"]["agent_steps_total"] > 0  # it acted all along
        assert result["policies"]["learner"]["agent_steps_total"] >= 2 * SMALL_PPO["trainBatchSize"]
        assert result["timesteps_total"] == algo.timesteps > 0
        evaluation = algo.evaluate(4)
        assert evaluation["episodes"] == 4
        assert evaluation["episode_len_mean"] == 10
    finally:
        algo.stop()


def test_one_algorithm_per_policy_by_composition(tmp_path: Path) -> None:
    """The multi-agent algorithm has one unmodified single-agent Algorithm per policy with weights and
    is not one itself; the policy API reaches each policy's own."""
    assert not issubclass(MultiAgentAlgorithm, Algorithm)
    algo = build_multi_agent(coop_doc(tmp_path, TWO_POLICIES))
    try:
        assert {pid: type(sub) for pid, sub in algo.subs.items()} == {"learner": PPO, "fixed": PPO}
        assert algo.get_policy("fixed").algorithm is algo.subs["fixed"]
        assert algo.get_policy().algorithm is algo.subs["learner"]  # "default_policy": the learning one
        obs = algo.policy_spaces["fixed"][0].sample()
        assert algo.compute_single_action(obs, policy_id="fixed") == algo.subs["fixed"].compute_actions(obs)
    finally:
        algo.stop()


def test_rollout_and_record_refuse_a_multi_agent_checkpoint(tmp_path: Path) -> None:
    algo = build_multi_agent(coop_doc(tmp_path, TWO_POLICIES))
    try:
        uri = algo.save()
    finally:
        algo.stop()
    with pytest.raises(ValueError, match="multi-agent checkpoint; rollout plays single-agent policies"):
        rollout_checkpoint(uri, steps=10, episodes=None)
    with pytest.raises(ValueError, match="multi-agent checkpoint: record writes one policy"):
        record_checkpoint(uri, output=str(tmp_path / "out"), steps=10)
    assert not (tmp_path / "out").exists()


def test_metrics_carry_the_policy_label(tmp_path: Path) -> None:
    algo = build_multi_agent(selfplay_doc(tmp_path))
    try:
        result = algo.train()
    finally:
        algo.stop()
    assert result["self_play"]["vs_random"]["games"] == 20
    metrics = TrainerMetrics(job="j", namespace="n", algorithm="PPO")
    metrics.update(result)
    text = metrics.exposition().decode()
    labels = 'algorithm="PPO",job="j",namespace="n"'
    assert f'kuberl_learner_loss{{{labels},policy="main",term="policy"}}' in text
    assert f'kuberl_selfplay_win_rate{{{labels},policy="main"}}' in text
    assert f'kuberl_selfplay_random_win_rate{{{labels},policy="main"}}' in text
    assert f'kuberl_selfplay_pool_size{{{labels},policy="main"}} 2.0' in text
    assert f'kuberl_episode_return_mean{{{labels},policy="__all__"}}' in text  # whole games (zero-sum: 0)
    assert f'kuberl_episode_return_mean{{{labels},policy="opponent"}}' in text


def test_checkpoint_round_trip_with_self_play_pool(tmp_path: Path) -> None:
    algo = build_multi_agent(selfplay_doc(tmp_path / "a"))
    try:
        for _ in range(3):
            algo.train()
        uri = algo.save(str(tmp_path / "ckpt"))
        assert algo.pool is not None
        main, pool = (
            copy_weights(algo.subs["main"].get_weights()),
            [copy_weights(w) for w in algo.pool.as_list()],
        )
        counters = (
            algo.iteration,
            algo.timesteps,
            algo.episodes_total,
            algo.games_total,
            list(algo.outcomes),
        )
    finally:
        algo.stop()
    assert len(pool) == 2  # a FIFO of 2 …
    assert algo.pool.taken == 4  # … of the initial weights plus one snapshot per iteration

    restored = build_multi_agent(selfplay_doc(tmp_path / "b"))
    try:
        restored.restore(uri)
        assert restored.pool is not None
        assert weights_equal(restored.subs["main"].get_weights(), main)
        assert all(weights_equal(a, b) for a, b in zip(restored.pool.as_list(), pool, strict=True))
        assert (
            restored.iteration,
            restored.timesteps,
            restored.episodes_total,
            restored.games_total,
            list(restored.outcomes),
        ) == counters
        assert restored.train()["training_iteration"] == 4
    finally:
        restored.stop()

    # A frozen policy can start from a policy in that checkpoint.
    doc = coop_doc(tmp_path / "c", {})
    doc["spec"]["env"] = "classic/tictactoe-v3"
    doc["spec"].pop("envConfig")
    doc["spec"]["multiAgent"] = {
        "policies": {
            "student": {},
            "teacher": {"trainable": False, "checkpoint": uri, "checkpointPolicy": "main"},
        },
        "policyMapping": [
            {"agentPattern": "player_1", "policy": "student"},
            {"agentPattern": "*", "policy": "teacher"},
        ],
    }
    seeded = build_multi_agent(doc)
    try:
        assert weights_equal(seeded.subs["teacher"].get_weights(), main)
    finally:
        seeded.stop()


def test_single_agent_checkpoint_is_refused(tmp_path: Path) -> None:
    single = build_algorithm(
        {
            "metadata": {"name": "sa"},
            "spec": {
                "algorithm": "PPO",
                "env": "CartPole-v1",
                "runDir": str(tmp_path / "sa"),
                "config": SMALL_PPO,
                "resources": {"envRunners": 0, "envsPerRunner": 2},
            },
        }
    )
    uri = single.save(str(tmp_path / "sa-ckpt"))
    single.stop()
    algo = build_multi_agent(coop_doc(tmp_path / "ma", {}))
    try:
        with pytest.raises(ValueError, match="single-agent run"):
            algo.restore(uri)
    finally:
        algo.stop()


@pytest.mark.usefixtures("ray_session")
def test_ray_runners_and_recovery(tmp_path: Path) -> None:
    doc = coop_doc(
        tmp_path, TWO_POLICIES, resources={"envRunners": 2, "envsPerRunner": 2, "cpusPerRunner": 0.5}
    )
    algo = build_multi_agent(doc)
    try:
        first = algo.train()
        assert first["env_runners"]["num_healthy"] == 2
        algo.group._ray().kill(algo.group.actors[0], no_restart=True)
        second = algo.train()
        assert second["env_runners"]["restarts_total"] == 1
        assert (
            second["policies"]["learner"]["agent_steps_total"]
            > first["policies"]["learner"]["agent_steps_total"]
        )
    finally:
        algo.stop()


def test_kuberl_run_trains_checkpoints_and_resumes(tmp_path: Path) -> None:
    doc = selfplay_doc(tmp_path, stop={"iterations": 2})
    outcome = run_job(parse_job(doc))
    assert outcome.result is not None
    assert outcome.result["training_iteration"] == 2
    assert outcome.last_checkpoint is not None
    doc["spec"]["stop"] = {"iterations": 3}
    again = run_job(parse_job(doc))
    assert again.resumed_from == outcome.last_checkpoint
    assert again.result is not None
    assert again.result["training_iteration"] == 3
