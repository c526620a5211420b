"""Multi-agent learning: shared and separate PPO policies, DQN and SAC, and self-play tic-tac-toe.

Budgets and thresholds were checked over seeds 0-4 (docs/multi-agent.md, with the steps each took).
The cooperative env's random play is measured here too, so "beats random" is a stated margin.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import gymnasium as gym
import numpy as np
import pytest

from kuberl.build import build_algorithm
from kuberl.core.multi_agent.env import make_agent_env
from kuberl.metrics import TrainerMetrics
from tests.learning.common import SEED, example


def random_coop_return(episodes: int = 300, **config: Any) -> float:
    """Mean env return (summed over agents) of uniformly random play in the cooperative env."""
    env = make_agent_env("kuberl.multi_agent.envs:coop_match", config)
    total = 0.0
    rng = np.random.default_rng(SEED)
    for ep in range(episodes):
        obs = env.reset(seed=SEED * 1000 + ep)
        while obs:
            space = env.action_space(next(iter(obs)))
            if isinstance(space, gym.spaces.Discrete):
                step = env.step({a: int(rng.integers(space.n)) for a in obs})
            else:
                step = env.step({a: rng.uniform(-1, 1, size=1).astype(np.float32) for a in obs})
            total += sum(step.rewards.values())
            obs = {} if step.done else step.obs
    env.close()
    return total / episodes


def train(doc: dict[str, Any], *, until: Any, budget: int) -> tuple[Any, list[dict[str, Any]]]:
    algo = build_algorithm(doc)
    results: list[dict[str, Any]] = []
    try:
        while algo.timesteps < budget:
            results.append(algo.train())
            if until(algo, results[-1]):
                break
        return algo, results
    except BaseException:
        algo.stop()
        raise


@pytest.mark.learning
@pytest.mark.usefixtures("ray_session")
def test_shared_policy_ppo_beats_random_by_10(tmp_path: Path) -> None:
    """Two agents share one PPO policy (with Ray env runners); greedy play must beat random by ≥ 10."""
    random_return = random_coop_return(agents=2, cues=3, max_steps=10)
    assert 6.0 < random_return < 7.5  # 2 agents · 10 steps · 1/3
    doc = example("ma-coop-ppo.yaml", tmp_path)
    algo, results = train(doc, until=lambda a, r: (r["episode_return_mean"] or 0) >= 18, budget=60_000)
    try:
        evaluation = algo.evaluate(50)
        assert evaluation["episode_return_mean"] >= random_return + 10, (evaluation, algo.timesteps)
        assert set(results[-1]["policies"]) == {"default_policy"}
    finally:
        algo.stop()


@pytest.mark.learning
def test_two_separate_ppo_policies_both_improve(tmp_path: Path) -> None:
    doc = example("ma-coop-two-policies.yaml", tmp_path, "resources.envRunners=0")

    def both_good(algo: Any, result: dict[str, Any]) -> bool:
        return all((p["episode_return_mean"] or 0) >= 8.5 for p in result["policies"].values())

    algo, results = train(doc, until=both_good, budget=60_000)
    try:
        # The team reward is shared, so check each policy's own greedy answers: agent i must play
        # (cue + i) mod 3. Observation: one-hot cue (3), one-hot agent id (2).
        for pid, agent in (("left", 0), ("right", 1)):
            obs = np.zeros((3, 5), dtype=np.float32)
            obs[np.arange(3), np.arange(3)] = 1.0
            obs[:, 3 + agent] = 1.0
            actions = algo.compute_actions(obs, policy_id=pid)
            correct = int(np.sum(actions == (np.arange(3) + agent) % 3))
            assert correct >= 2, (pid, actions)
    finally:
        algo.stop()
    first, last = results[0]["policies"], results[-1]["policies"]
    for pid in ("left", "right"):
        # Team reward per agent: random ≈ 3.3 of 10; both must improve well beyond it (8.5 needs both
        # agents right at least 70% of the time).
        assert last[pid]["episode_return_mean"] >= 8.5, (pid, last, algo.timesteps)
        assert last[pid]["episode_return_mean"] > first[pid]["episode_return_mean"] + 3
        assert last[pid]["agent_steps_total"] > 0
        assert "total_loss" in results[-1]["learner"][pid]
    metrics = TrainerMetrics(job="ma", namespace="test", algorithm="PPO")
    metrics.update(results[-1])
    text = metrics.exposition().decode()
    for pid in ("left", "right"):
        assert (
            f'kuberl_episode_return_mean{{algorithm="PPO",job="ma",namespace="test",policy="{pid}"}}' in text
        )
        assert (
            f'kuberl_learner_loss{{algorithm="PPO",job="ma",namespace="test",policy="{pid}",term="total"}}'
            in text
        )


@pytest.mark.learning
def test_shared_policy_dqn_learns(tmp_path: Path) -> None:
    doc = example("ma-coop-dqn.yaml", tmp_path)
    algo, _ = train(doc, until=lambda a, r: False, budget=20_000)
    try:
        evaluation = algo.evaluate(50)
        # Random ≈ 6.7; a modest bar for a short run.
        assert evaluation["episode_return_mean"] >= 14, (evaluation, algo.timesteps)
    finally:
        algo.stop()


@pytest.mark.learning
def test_shared_policy_sac_learns_continuous(tmp_path: Path) -> None:
    doc = example("ma-coop-sac.yaml", tmp_path)
    random_return = random_coop_return(agents=2, max_steps=10, continuous=True)
    assert -14.5 < random_return < -12.0  # 2 agents · 10 steps · E|U − U'| = 2/3
    algo, _ = train(doc, until=lambda a, r: False, budget=4_000)
    try:
        evaluation = algo.evaluate(50)
        # A quarter of random play's distance to the targets, or better.
        assert evaluation["episode_return_mean"] >= random_return / 4, (
            evaluation,
            random_return,
            algo.timesteps,
        )
    finally:
        algo.stop()


@pytest.mark.learning
def test_self_play_tictactoe_beats_random_in_90_percent(tmp_path: Path) -> None:
    """PPO self-play with action masks for 150k env steps, then ≥ 90% wins (draws do not count) in
    1,000 games against a uniformly random legal-move player, each in a fresh env, seats drawn at random."""
    doc = example("ma-tictactoe-selfplay.yaml", tmp_path, "multiAgent.selfPlay.evaluationGames=0")
    algo, results = train(doc, until=lambda a, r: False, budget=150_000)
    try:
        final = algo.evaluate_vs_random(1000)
        assert final["games"] == 1000
        assert final["win_rate"] >= 0.90, (final, algo.timesteps)
        assert results[-1]["self_play"]["pool_size"] >= 8  # a snapshot every 2 iterations of ~8k env steps
        assert results[-1]["self_play"]["games_total"] > 10_000  # ~9 env steps a game
    finally:
        algo.stop()
