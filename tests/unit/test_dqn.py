"""DQN: config checks, the dueling head, the loss against hand values, the epsilon-greedy runner
policy, and a checkpoint round trip (identical actions and replay contents after restore)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import gymnasium as gym
import numpy as np
import pytest
import torch
from pydantic import ValidationError
from torch import nn

from kuberl.algorithms.dqn import DQN, QNetwork, QPolicy, dqn_loss
from kuberl.build import build_algorithm
from kuberl.core.replay import PrioritizedReplayBuffer
from kuberl.spec import parse_job
from kuberl.spec.algorithms import ModelConfig
from kuberl.spec.algorithms.dqn import DQNConfig
from tests.fixtures.jobs import job_doc


def job(config: dict[str, Any], **spec: Any) -> dict[str, Any]:
    return job_doc("DQN", "CartPole-v1", seed=3, name="dqn-test", config=config, envs_per_runner=2, **spec)


# -- config ----------------------------------------------------------------------------------------


def test_config_joins_the_union_and_accepts_rllib_names() -> None:
    cfg = parse_job(job({"learning_starts": 10, "capacity": 500, "trainBatchSize": 8})).spec.config
    assert isinstance(cfg, DQNConfig)
    assert cfg.num_steps_sampled_before_learning_starts == 10
    assert cfg.buffer_size == 500
    assert cfg.train_batch_size == 8
    assert cfg.model.fcnet_activation == "relu"


@pytest.mark.parametrize(
    ("config", "message"),
    [
        (
            {"buffer_size": 100, "num_steps_sampled_before_learning_starts": 200},
            "must not exceed buffer_size",
        ),
        ({"buffer_size": 10, "train_batch_size": 32, "learning_starts": 0}, "a batch would repeat"),
        ({"n_step": 5, "rollout_fragment_length": 4}, "cut at the end of each fragment"),
        ({"epsilon": [[0, 1.5]]}, r"lie in \[0, 1\]"),
        ({"epsilon": [[100, 1.0], [0, 0.1]]}, "increasing"),
        ({"tau": 0.0}, "tau"),
    ],
)
def test_config_rejects_inconsistent_settings(config: dict[str, Any], message: str) -> None:
    with pytest.raises(ValidationError, match=message):
        DQNConfig.model_validate(config)


# -- network, loss, policy -------------------------------------------------------------------------


def test_dueling_head_combines_value_and_centred_advantage() -> None:
    torch.manual_seed(0)
    net = QNetwork(3, 4, ModelConfig(fcnet_hiddens=[8]), dueling=True)
    obs = torch.randn(5, 3)
    h = net.trunk(obs)
    assert net.value is not None
    v, a = net.value(h), net.advantage(h)
    torch.testing.assert_close(net(obs), v + a - a.mean(dim=1, keepdim=True))
    assert QNetwork(3, 4, ModelConfig(fcnet_hiddens=[8]), dueling=False)(obs).shape == (5, 4)


class Table(nn.Module):
    """Q-values looked up by the (integer) first observation feature."""

    def __init__(self, table: list[list[float]]) -> None:
        super().__init__()
        self.q = nn.Parameter(torch.tensor(table))

    def forward(self, obs: torch.Tensor) -> torch.Tensor:
        return self.q[obs[:, 0].long()]


def loss_batch(weights: list[float]) -> dict[str, torch.Tensor]:
    return {
        "obs": torch.tensor([[0.0], [1.0]]),
        "actions": torch.tensor([1, 0]),
        "rewards": torch.tensor([1.0, 2.0]),
        "next_obs": torch.tensor([[1.0], [2.0]]),
        "terminateds": torch.tensor([False, True]),
        "discounts": torch.tensor([0.5, 0.25]),
        "weights": torch.tensor(weights),
    }


def test_dqn_loss_matches_hand_values_double_and_plain() -> None:
    online = Table([[0.0, 3.0], [2.0, 5.0], [0.0, 0.0]])
    target = Table([[0.0, 0.0], [4.0, 1.0], [9.0, 9.0]])
    batch = loss_batch([1.0, 1.0])
    # double Q: online picks argmax at s'=1 → action 1, the target values it at 1.0; y0 = 1 + .5·1 = 1.5
    # sample 1 terminated: y1 = 2. Q taken: 3.0 and 2.0 → TD errors 1.5 and 0.0
    terms, td = dqn_loss(online, target, batch, config=DQNConfig(double_q=True))
    torch.testing.assert_close(td, torch.tensor([1.5, 0.0]))
    torch.testing.assert_close(terms["target_q_mean"], torch.tensor(1.75))
    huber = (1.5 - 0.5) / 2  # smooth L1 with δ=1 beyond 1 is |x| − ½
    torch.testing.assert_close(terms["total_loss"], torch.tensor(huber))
    # plain: max of the target at s'=1 is 4.0; y0 = 1 + .5·4 = 3 → TD 0
    terms, td = dqn_loss(online, target, batch, config=DQNConfig(double_q=False))
    torch.testing.assert_close(td, torch.tensor([0.0, 0.0]))
    # mse: ½ δ²
    terms, _ = dqn_loss(online, target, batch, config=DQNConfig(td_error_loss_fn="mse"))
    torch.testing.assert_close(terms["total_loss"], torch.tensor(0.5 * 1.5**2 / 2))


def test_dqn_loss_applies_importance_weights() -> None:
    online = Table([[0.0, 3.0], [2.0, 5.0], [0.0, 0.0]])
    target = Table([[0.0, 0.0], [4.0, 1.0], [9.0, 9.0]])
    full, _ = dqn_loss(online, target, loss_batch([1.0, 1.0]), config=DQNConfig())
    half, _ = dqn_loss(online, target, loss_batch([0.5, 1.0]), config=DQNConfig())
    torch.testing.assert_close(half["total_loss"], full["total_loss"] * 0.5)


def test_q_policy_is_epsilon_greedy() -> None:
    space = gym.spaces.Box(-1, 1, (3,))
    policy = QPolicy(space, gym.spaces.Discrete(4), ModelConfig(fcnet_hiddens=[8]), {"epsilon": 0.0})
    gen = torch.Generator().manual_seed(0)
    obs = torch.randn(2000, 3)
    greedy = policy.module(obs).argmax(dim=1)
    torch.testing.assert_close(policy.act(obs, explore=True, generator=gen)["actions"], greedy)
    policy.set_options({"epsilon": 1.0})
    actions = policy.act(obs, explore=True, generator=gen)["actions"]
    counts = np.bincount(actions.numpy(), minlength=4)
    assert counts.min() > 400  # uniform over 4 actions: ~500 each
    torch.testing.assert_close(policy.act(obs, explore=False, generator=gen)["actions"], greedy)
    assert policy.value(obs) is None


# -- the algorithm ---------------------------------------------------------------------------------

SMALL = {
    "train_batch_size": 16,
    "rollout_fragment_length": 8,
    "buffer_size": 1000,
    "learning_starts": 32,
    "target_network_update_freq": 32,
    "num_updates_per_iteration": 2,
    "n_step": 3,
    "model": {"fcnet_hiddens": [16]},
    "store_buffer_in_checkpoints": True,
}


@pytest.mark.parametrize("prioritized", [False, True])
def test_checkpoint_restores_actions_and_replay_buffer(tmp_path: Path, prioritized: bool) -> None:
    config = {**SMALL, "prioritized_replay": prioritized}
    algo = build_algorithm(job(config), run_dir=tmp_path / "a")
    try:
        for _ in range(6):
            result = algo.train()
        stats = result["learner"]["default_policy"]
        assert stats["num_updates"] == 2
        assert stats["buffer_size"] == 6 * 8 * 2
        assert {"total_loss", "q_mean", "td_error_abs", "epsilon"} <= set(stats)
        uri = algo.save(str(tmp_path / "ckpt"))
        obs = np.random.default_rng(0).normal(size=(64, 4)).astype(np.float32)
        actions = algo.compute_actions(obs)
        assert isinstance(algo, DQN)
        assert isinstance(algo.buffer, PrioritizedReplayBuffer) == prioritized
        before = algo.buffer.state()
    finally:
        algo.stop()

    fresh = build_algorithm(job(config), run_dir=tmp_path / "b")
    try:
        assert isinstance(fresh, DQN)
        assert len(fresh.buffer) == 0
        fresh.restore(uri)
        np.testing.assert_array_equal(fresh.compute_actions(obs), actions)
        after = fresh.buffer.state()
        assert after["size"] == before["size"]
        for col, arr in before["storage"].items():
            np.testing.assert_array_equal(after["storage"][col], arr)
        if prioritized:
            np.testing.assert_array_equal(after["priorities"], before["priorities"])
        assert fresh.timesteps == 6 * 8 * 2
        fresh.train()  # and training carries on
    finally:
        fresh.stop()


def test_buffer_left_out_of_checkpoints_unless_asked(tmp_path: Path) -> None:
    algo = build_algorithm(job({**SMALL, "store_buffer_in_checkpoints": False}), run_dir=tmp_path)
    try:
        algo.train()
        assert algo.get_state()["algo"]["buffer"] is None
    finally:
        algo.stop()


def test_training_intensity_sets_updates_per_iteration(tmp_path: Path) -> None:
    # 8 steps × 2 envs = 16 sampled per iteration; intensity 3 with batch 16 → 3 updates each
    config = {**SMALL, "training_intensity": 3.0, "learning_starts": 0}
    algo = build_algorithm(job(config), run_dir=tmp_path)
    try:
        assert algo.train()["learner"]["default_policy"]["num_updates"] == 3
        assert algo.train()["num_env_steps_trained"] == 3 * 16
    finally:
        algo.stop()


def test_epsilon_schedule_reaches_runners_and_greedy_evaluation(tmp_path: Path) -> None:
    config = {**SMALL, "epsilon": [[0, 1.0], [32, 0.0]]}
    algo = build_algorithm(job(config), run_dir=tmp_path)
    try:
        assert algo.train()["learner"]["default_policy"]["epsilon"] == pytest.approx(0.5)
        for _ in range(2):
            result = algo.train()
        assert result["learner"]["default_policy"]["epsilon"] == 0.0
        assert algo.runners.local is not None
        assert isinstance(algo.runners.local.policy, QPolicy)
        assert algo.runners.local.policy.epsilon == 0.0
        ev = algo.evaluate(2)
        assert ev["episodes"] == 2
    finally:
        algo.stop()
