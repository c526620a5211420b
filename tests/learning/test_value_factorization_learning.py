"""QMIX and VDN on the two-step cooperative matrix game of the QMIX paper (kuberl.envs:make_two_step_game),
trained as the paper does from uniformly random play (epsilon 1) and judged by the greedy team's return:

- QMIX reaches the optimal joint return (2 agents × payoff 8 = 16) within 6,000 env steps on every seed;
- VDN ends at the safe branch (2 × 7 = 14): a sum of per-agent values cannot represent branch 2B's value;
- independent learners (kuberl's multi-agent DQN, one policy per agent, the same budget, the same
  exploration) do not reach 16: each agent's value of 2B averages over its partner's random actions.

With action masks (kuberl.envs:make_forbidden_choice, where the forbidden actions pay most): QMIX never
takes a masked action, exploring or not, and ends at the best legal return; without the mask the same
learner takes the forbidden actions.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from kuberl.build import build_algorithm
from kuberl.envs import ForbiddenChoice
from tests.learning.common import SEED, example, train_until_evaluation

pytestmark = pytest.mark.learning

SEEDS = [SEED, SEED + 1, SEED + 2]
BUDGET = 6_000
OPTIMAL, SAFE = 16.0, 14.0


def greedy_return_after(doc: dict[str, Any], budget: int) -> float:
    algo = build_algorithm(doc)
    try:
        while algo.timesteps < budget:
            algo.train()
        ret = algo.evaluate(1, explore=False)["episode_return_mean"]
        assert ret is not None
        return float(ret)
    finally:
        algo.stop()


@pytest.mark.parametrize("seed", SEEDS)
def test_qmix_finds_the_optimal_joint_action(seed: int, tmp_path: Path) -> None:
    doc = example("qmix-two-step.yaml", tmp_path, f"seed={seed}", "evaluation.interval=0")
    out = train_until_evaluation(doc, threshold=OPTIMAL, budget=BUDGET, every=500, first=500)
    assert out.best >= OPTIMAL, out.describe()


@pytest.mark.parametrize("seed", SEEDS)
def test_vdn_settles_for_the_safe_branch(seed: int, tmp_path: Path) -> None:
    doc = example("vdn-two-step.yaml", tmp_path, f"seed={seed}", "evaluation.interval=0")
    assert greedy_return_after(doc, BUDGET) == SAFE


def independent_dqn(seed: int, tmp_path: Path) -> dict[str, Any]:
    """Each agent its own DQN policy, with QMIX's budget, exploration, network and learning rate."""
    return {
        "apiVersion": "kuberl.io/v1alpha1",
        "kind": "RLTrainingJob",
        "metadata": {"name": "iql-two-step"},
        "spec": {
            "algorithm": "DQN",
            "env": "kuberl.envs:make_two_step_game",
            "seed": seed,
            "runDir": str(tmp_path),
            "config": {
                "lr": 0.002,
                "gamma": 0.99,
                "train_batch_size": 64,
                "rollout_fragment_length": 1,
                "training_intensity": 8,
                "buffer_size": 2000,
                "num_steps_sampled_before_learning_starts": 64,
                "target_network_update_freq": 100,
                "epsilon": [[0, 1.0]],
                "model": {"fcnet_hiddens": [32], "fcnet_activation": "relu"},
            },
            "multiAgent": {
                "policies": {"p0": {}, "p1": {}},
                "policyMapping": [
                    {"agentPattern": "agent_0", "policy": "p0"},
                    {"agentPattern": "agent_1", "policy": "p1"},
                ],
            },
            "resources": {"envRunners": 0, "envsPerRunner": 8},
        },
    }


@pytest.mark.parametrize("seed", SEEDS)
def test_independent_dqn_misses_the_optimal_joint_action(seed: int, tmp_path: Path) -> None:
    assert greedy_return_after(independent_dqn(seed, tmp_path), BUDGET) < OPTIMAL


# -- action masks: kuberl.envs:make_forbidden_choice, examples/qmix-masked.yaml ---------------------------
BEST_LEGAL, BEST_FORBIDDEN = ForbiddenChoice.best_legal_return(), 120.0
MASK_BUDGET = 2_000


@pytest.mark.parametrize("seed", SEEDS)
def test_qmix_never_takes_a_masked_action_and_finds_the_best_legal_ones(seed: int, tmp_path: Path) -> None:
    """The env raises on a forbidden action (strict), so finishing the budget means none was taken, in
    exploration either; the greedy team then earns the best legal return."""
    doc = example("qmix-masked.yaml", tmp_path, f"seed={seed}", "evaluation.interval=0")
    assert greedy_return_after(doc, MASK_BUDGET) == BEST_LEGAL


@pytest.mark.parametrize("seed", SEEDS)
def test_without_the_mask_the_team_learns_the_forbidden_actions(seed: int, tmp_path: Path) -> None:
    """The control: the same env and budget with the mask dropped (and not enforced) — the forbidden
    actions pay most, so a learner that does not honour the mask takes them."""
    doc = example(
        "qmix-masked.yaml", tmp_path, f"seed={seed}", "evaluation.interval=0",
        "envConfig.mask=false", "envConfig.strict=false",
    )  # fmt: skip
    assert greedy_return_after(doc, MASK_BUDGET) == BEST_FORBIDDEN


# -- recurrent agents: kuberl.envs:make_team_recall, examples/qmix-gru-recall.yaml -------------------------
RECALLED, GUESSED = 2.0, 1.0  # summed return: both answer the cue; the best blind (coordinated) guess
RECALL_BUDGET = 4_000
RECALL_EPISODES = 100


def greedy_mean_after(doc: dict[str, Any], budget: int, episodes: int) -> float:
    algo = build_algorithm(doc)
    try:
        while algo.timesteps < budget:
            algo.train()
        ret = algo.evaluate(episodes, explore=False)["episode_return_mean"]
        assert ret is not None
        return float(ret)
    finally:
        algo.stop()


@pytest.mark.parametrize("seed", SEEDS)
def test_qmix_gru_agents_remember_the_cue(seed: int, tmp_path: Path) -> None:
    doc = example("qmix-gru-recall.yaml", tmp_path, f"seed={seed}", "evaluation.interval=0")
    assert greedy_mean_after(doc, RECALL_BUDGET, RECALL_EPISODES) == RECALLED


@pytest.mark.parametrize("seed", SEEDS)
def test_feed_forward_agents_can_only_guess_the_cue(seed: int, tmp_path: Path) -> None:
    """The control: the same job without useLstm. A blind answer is right half the time, so over 100
    episodes the greedy team stays far below 2 (its expectation is at most 1)."""
    doc = example(
        "qmix-gru-recall.yaml",
        tmp_path,
        f"seed={seed}",
        "evaluation.interval=0",
        "config.model.use_lstm=false",
    )
    assert greedy_mean_after(doc, RECALL_BUDGET, RECALL_EPISODES) < 1.5
