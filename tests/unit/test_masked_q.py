"""Action masks in DQN and discrete SAC: greedy, epsilon-random and warm-up actions are legal, the
Q-target's argmax/max and the soft value of s' range over the actions legal in s', and the networks'
state-dict keys are the same with and without a mask."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import gymnasium as gym
import numpy as np
import pytest
import torch

from kuberl.algorithms.dqn import QNetwork, QPolicy, build_q_network, dqn_loss
from kuberl.algorithms.sac import (
    MaskedCategoricalActor,
    MaskedCategoricalPolicy,
    SACLearner,
    discrete_expectations,
    sac_runner_policy,
)
from kuberl.build import build_algorithm
from kuberl.core.multi_agent.masking import ILLEGAL_LOGIT
from kuberl.core.networks import CategoricalActor
from kuberl.core.replay import WEIGHTS
from kuberl.core.returns import DISCOUNTS
from kuberl.core.sample_batch import Columns
from kuberl.multi_agent.algorithm import MultiAgentAlgorithm
from kuberl.spec.algorithms import ModelConfig
from kuberl.spec.algorithms.dqn import DQNConfig
from kuberl.spec.algorithms.sac import SACConfig

N = 5
# Gymnasium flattens a Dict in sorted key order: the mask (5) first, then the features (3).
SPACE = gym.spaces.Dict(
    {
        "action_mask": gym.spaces.MultiBinary(N),
        "observation": gym.spaces.Box(-1.0, 1.0, (3,), dtype=np.float32),
    }
)
ACTIONS = gym.spaces.Discrete(N)
MODEL = ModelConfig(fcnet_hiddens=[16])


def flat(mask_rows: list[list[int]]) -> torch.Tensor:
    mask = np.asarray(mask_rows, dtype=np.float32)
    features = np.random.default_rng(0).uniform(-1, 1, (len(mask), 3)).astype(np.float32)
    return torch.from_numpy(np.concatenate([mask, features], axis=1))


def last_linear(layer: Any) -> torch.nn.Linear:
    assert isinstance(layer, torch.nn.Module)
    return next(m for m in reversed(list(layer.modules())) if isinstance(m, torch.nn.Linear))


def favour(layer: Any, action: int, value: float = 100.0, *, reset: bool = True) -> None:
    """Make `action` the network's best by far, whatever the input: the illegal pick a bug would make."""
    linear = last_linear(layer)
    with torch.no_grad():
        if reset:
            linear.weight.zero_()
            linear.bias.zero_()
        linear.bias[action] = value


# Action 0 is illegal everywhere; the second row allows only action 3.
MASKS = [[0, 1, 1, 1, 1], [0, 0, 0, 1, 0]]


# -- DQN ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("dueling", [False, True])
def test_q_network_masks_illegal_actions_and_keeps_its_keys(dueling: bool) -> None:
    q_net = build_q_network(SPACE, ACTIONS, MODEL, dueling=dueling)
    assert isinstance(q_net, QNetwork)
    favour(q_net.advantage, 0)
    q = q_net(flat(MASKS))
    assert torch.all(q[:, 0] == ILLEGAL_LOGIT)
    assert q.argmax(-1).tolist() == [q[0, 1:].argmax().item() + 1, 3]
    plain = QNetwork(8, N, MODEL, dueling=dueling)
    assert list(q_net.state_dict()) == list(plain.state_dict())


def test_a_row_without_legal_actions_is_left_unmasked() -> None:
    """PettingZoo's last observation of a finished game has an all-zero mask: masking every action
    would put ILLEGAL_LOGIT into a (truncated) target."""
    q = build_q_network(SPACE, ACTIONS, MODEL, dueling=False)(flat([[0, 0, 0, 0, 0]]))
    assert torch.all(q > ILLEGAL_LOGIT)


def test_q_policy_greedy_and_random_actions_are_legal() -> None:
    policy = QPolicy(SPACE, ACTIONS, MODEL, {"dueling": False, "epsilon": 0.0})
    favour(policy.module.advantage, 0)
    obs = flat(MASKS * 200)
    gen = torch.Generator().manual_seed(0)
    greedy = policy.act(obs, explore=True, generator=gen)[Columns.ACTIONS]
    assert 0 not in greedy.tolist()
    assert set(greedy[1::2].tolist()) == {3}
    policy.set_options({"epsilon": 1.0})
    random = policy.act(obs, explore=True, generator=gen)[Columns.ACTIONS]
    assert set(random[0::2].tolist()) == {1, 2, 3, 4}, "uniform over the legal actions"
    assert set(random[1::2].tolist()) == {3}


@pytest.mark.parametrize("double_q", [False, True])
def test_q_target_maximises_over_the_legal_actions_of_s_prime(double_q: bool) -> None:
    """An illegal action of s' with a huge Q must not enter the target: y = r + γ Q'(s', only legal)."""
    module = build_q_network(SPACE, ACTIONS, MODEL, dueling=False)
    target = build_q_network(SPACE, ACTIONS, MODEL, dueling=False)
    favour(module.advantage, 0)
    favour(target.advantage, 0)
    # Among the legal actions, 3 is the best.
    favour(module.advantage, 3, 50.0, reset=False)
    favour(target.advantage, 3, 7.0, reset=False)
    obs = flat([[1, 1, 1, 1, 1]] * 2)
    batch = {
        Columns.OBS: obs,
        Columns.NEXT_OBS: flat(MASKS),
        Columns.ACTIONS: torch.tensor([1, 2]),
        Columns.REWARDS: torch.tensor([1.0, 0.0]),
        Columns.TERMINATEDS: torch.tensor([False, False]),
        DISCOUNTS: torch.tensor([0.5, 0.5]),
        WEIGHTS: torch.ones(2),
    }
    config = DQNConfig.model_validate({"algorithm": "DQN", "double_q": double_q})
    terms, _ = dqn_loss(module, target, batch, config=config)
    assert float(terms["target_q_mean"]) == pytest.approx((1.0 + 0.5 * 7.0 + 0.5 * 7.0) / 2)


# -- discrete SAC ------------------------------------------------------------------------------------


def test_masked_categorical_actor_gives_illegal_actions_zero_probability() -> None:
    actor = MaskedCategoricalActor(8, N, MODEL, mask=slice(0, N))
    favour(actor.net, 0)
    with torch.no_grad():
        probs = torch.softmax(actor(flat(MASKS)), -1)
    assert torch.all(probs[:, 0] == 0.0)
    assert float(probs[1, 3]) == pytest.approx(1.0)
    assert list(actor.state_dict()) == list(CategoricalActor(8, N, MODEL).state_dict())


def test_sac_runner_policy_is_masked_in_warm_up_and_after() -> None:
    policy = sac_runner_policy(SPACE, ACTIONS, MODEL, {})
    assert isinstance(policy, MaskedCategoricalPolicy)
    favour(policy.actor.net, 0)
    obs = flat(MASKS * 200)
    gen = torch.Generator().manual_seed(0)
    warm = policy.act(obs, explore=True, generator=gen)[Columns.ACTIONS]  # random_actions before learning
    assert set(warm[0::2].tolist()) == {1, 2, 3, 4}
    assert set(warm[1::2].tolist()) == {3}
    policy.set_options({"random_actions": False})
    for explore in (True, False):
        acted = policy.act(obs, explore=explore, generator=gen)[Columns.ACTIONS]
        assert 0 not in acted.tolist()
        assert set(acted[1::2].tolist()) == {3}


def test_sac_soft_value_of_s_prime_and_entropy_target_use_the_legal_actions() -> None:
    config = SACConfig.model_validate({"algorithm": "SAC", "model": {"fcnet_hiddens": [16]}})
    learner = SACLearner(SPACE, ACTIONS, config, torch.device("cpu"))
    assert isinstance(learner.actor, MaskedCategoricalActor)
    next_obs = flat(MASKS)
    q = torch.zeros(2, N)
    q[:, 0] = 1e6  # an illegal action with a huge value must not leak into V(s')
    alpha = torch.tensor(0.1)
    with torch.no_grad():
        v, entropy = discrete_expectations(learner.actor(next_obs), q, alpha)
    assert torch.all(v.abs() < 1.0)
    assert float(entropy[1]) == pytest.approx(0.0, abs=1e-6)  # one legal move: no entropy to have
    batch = {
        Columns.OBS: next_obs,
        Columns.NEXT_OBS: next_obs,
        Columns.ACTIONS: torch.tensor([1, 3]),
        Columns.REWARDS: torch.zeros(2),
        Columns.TERMINATEDS: torch.tensor([False, False]),
        DISCOUNTS: torch.full((2,), 0.9),
        WEIGHTS: torch.ones(2),
    }
    out = learner.update(batch)
    assert all(torch.isfinite(v).all() for v in out.values())
    # The per-state target: 0.98 log 4 and 0.98 log 1 = 0, so the alpha loss is finite and bounded.
    assert abs(float(out["alpha_loss"])) < 10.0


# -- end to end: multi-agent tic-tac-toe -------------------------------------------------------------


def tictactoe_doc(tmp_path: Path, algorithm: str, config: dict[str, Any]) -> dict[str, Any]:
    return {
        "metadata": {"name": f"ma-ttt-{algorithm.lower()}"},
        "spec": {
            "algorithm": algorithm,
            "env": "classic/tictactoe-v3",
            "seed": 0,
            "runDir": str(tmp_path),
            "config": {"model": {"fcnet_hiddens": [32]}, **config},
            "resources": {"envRunners": 0, "envsPerRunner": 4},
            "metrics": {"enabled": False},
            "multiAgent": {
                "policies": {"x": {}, "o": {}},
                "policyMapping": [
                    {"agentPattern": "player_1", "policy": "x"},
                    {"agentPattern": "player_2", "policy": "o"},
                ],
            },
        },
    }


@pytest.mark.parametrize(
    ("algorithm", "config"),
    [
        (
            "DQN",
            {
                "rollout_fragment_length": 8,
                "train_batch_size": 32,
                "num_steps_sampled_before_learning_starts": 64,
                "epsilon": [[0, 1.0], [400, 0.2]],
            },
        ),
        (
            "SAC",
            {
                "rollout_fragment_length": 8,
                "train_batch_size": 32,
                "num_steps_sampled_before_learning_starts": 64,
            },
        ),
    ],
)
def test_multi_agent_tictactoe_never_plays_an_illegal_move(
    tmp_path: Path, algorithm: str, config: dict[str, Any]
) -> None:
    """PettingZoo ends a game at an illegal move with −1 for the offender only, so every game's return
    summed over both players is 0 exactly when every move was legal (random, greedy and sampled)."""
    algo = build_algorithm(tictactoe_doc(tmp_path, algorithm, config))
    assert isinstance(algo, MultiAgentAlgorithm)
    try:
        for _ in range(6):
            algo.train()
        assert len(algo.returns) >= 20
        assert all(r == 0.0 for r in algo.returns), sorted(algo.returns)[:5]
        assert algo.subs["x"].timesteps > 64, "learning started, so the learned policy also acted"
        greedy = algo.evaluate(20, explore=False)
        assert greedy["episode_return_mean"] == 0.0
    finally:
        algo.stop()
