"""Rainbow's distributional (C51) and noisy-net parts of DQN and Ape-X: the categorical projection
against a direct implementation of Bellemare et al.'s Algorithm 1, NoisyLinear's factorised noise, the
distributional Q head and loss, the config's checks, and both algorithms training with them."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import gymnasium as gym
import numpy as np
import pytest
import torch
from pydantic import ValidationError

from kuberl.algorithms.dqn import DQN, QNetwork, QPolicy, dqn_loss
from kuberl.build import build_algorithm
from kuberl.core.distributional import categorical_projection, categorical_support
from kuberl.core.networks import NoisyLinear, reset_noise, set_noisy
from kuberl.core.replay import PrioritizedReplayBuffer
from kuberl.spec.algorithms import ModelConfig
from kuberl.spec.algorithms.apex import APEXConfig
from kuberl.spec.algorithms.dqn import DQNConfig
from tests.fixtures.jobs import job_doc

# -- the projection --------------------------------------------------------------------------------


def reference_projection(probs: np.ndarray, reward: float, discount: float, z: np.ndarray) -> np.ndarray:
    """Algorithm 1 of Bellemare et al. 2017, atom by atom (with the on-grid case giving its mass)."""
    n, v_min, v_max = len(z), z[0], z[-1]
    dz = (v_max - v_min) / (n - 1)
    m = np.zeros(n)
    for j in range(n):
        tz = min(max(reward + discount * z[j], v_min), v_max)
        b = (tz - v_min) / dz
        lo, hi = int(np.floor(b)), int(np.ceil(b))
        if lo == hi:
            m[lo] += probs[j]
        else:
            m[lo] += probs[j] * (hi - b)
            m[hi] += probs[j] * (b - lo)
    return m


def test_projection_hand_values() -> None:
    z = categorical_support(-1.0, 1.0, 3)  # atoms −1, 0, 1
    p = torch.tensor([[0.0, 1.0, 0.0]] * 4)
    rewards = torch.tensor([0.5, 0.3, 5.0, 1.0])
    discounts = torch.tensor([1.0, 0.0, 0.9, 0.0])
    out = categorical_projection(p, rewards, discounts, z)
    expected = torch.tensor(
        [
            [0.0, 0.5, 0.5],  # 0.5 lies halfway between atoms 0 and 1
            [0.0, 0.7, 0.3],  # terminal: the reward alone, split by distance
            [0.0, 0.0, 1.0],  # clipped to v_max
            [0.0, 0.0, 1.0],  # exactly on an atom: all of it there
        ]
    )
    torch.testing.assert_close(out, expected)


def test_projection_matches_algorithm_1_and_keeps_mass() -> None:
    rng = np.random.default_rng(0)
    z = categorical_support(-10.0, 10.0, 51)
    probs = rng.dirichlet(np.ones(51), size=64)
    rewards = rng.normal(0.0, 3.0, 64)
    discounts = rng.choice([0.0, 0.9, 0.99**3, 1.0], size=64)
    out = categorical_projection(
        torch.tensor(probs, dtype=torch.float32),
        torch.tensor(rewards, dtype=torch.float32),
        torch.tensor(discounts, dtype=torch.float32),
        z,
    )
    ref = np.stack([reference_projection(probs[i], rewards[i], discounts[i], z.numpy()) for i in range(64)])
    np.testing.assert_allclose(out.numpy(), ref, atol=1e-5)
    np.testing.assert_allclose(out.sum(-1).numpy(), 1.0, atol=1e-5)


@pytest.mark.parametrize(("v_min", "v_max", "n", "message"), [(0, 1, 1, "at least 2"), (1, 1, 5, "below")])
def test_support_rejects_bad_bounds(v_min: float, v_max: float, n: int, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        categorical_support(v_min, v_max, n)


# -- noisy layers ----------------------------------------------------------------------------------


def test_noisy_linear_is_factorised_and_its_mean_when_off() -> None:
    torch.manual_seed(0)
    layer = NoisyLinear(5, 3, sigma0=0.5)
    x = torch.randn(7, 5)
    mean = torch.nn.functional.linear(x, layer.weight_mu, layer.bias_mu)
    torch.testing.assert_close(layer(x), mean)  # no noise drawn yet
    layer.reset_noise(torch.Generator().manual_seed(1))
    noisy = layer(x)
    assert not torch.allclose(noisy, mean)
    gen = torch.Generator().manual_seed(1)  # the same draws: ε_in first, then ε_out
    eps_in, eps_out = (
        e.sign() * e.abs().sqrt() for e in (torch.randn(5, generator=gen), torch.randn(3, generator=gen))
    )
    weight = layer.weight_mu + layer.weight_sigma * torch.outer(eps_out, eps_in)
    torch.testing.assert_close(
        noisy, torch.nn.functional.linear(x, weight, layer.bias_mu + layer.bias_sigma * eps_out)
    )
    torch.testing.assert_close(layer.weight_sigma, torch.full((3, 5), 0.5 / 5**0.5))
    set_noisy(layer, False)
    torch.testing.assert_close(layer(x), mean)
    assert set(layer.state_dict()) == {"weight_mu", "weight_sigma", "bias_mu", "bias_sigma"}


def test_noise_is_learned_through_sigma() -> None:
    layer = NoisyLinear(4, 2, sigma0=0.5)
    reset_noise(layer, torch.Generator().manual_seed(0))
    layer(torch.ones(3, 4)).pow(2).sum().backward()
    assert layer.weight_sigma.grad is not None
    assert layer.weight_sigma.grad.abs().sum() > 0


# -- the distributional head and loss --------------------------------------------------------------

MODEL = ModelConfig(fcnet_hiddens=[16])


@pytest.mark.parametrize("dueling", [False, True])
def test_distributional_q_is_the_mean_of_each_distribution(dueling: bool) -> None:
    torch.manual_seed(0)
    net = QNetwork(3, 4, MODEL, dueling=dueling, num_atoms=11, v_min=-2.0, v_max=3.0)
    obs = torch.randn(5, 3)
    q, log_p = net.distribution(obs)
    assert log_p.shape == (5, 4, 11)
    torch.testing.assert_close(log_p.exp().sum(-1), torch.ones(5, 4))
    torch.testing.assert_close(q, (log_p.exp() * torch.linspace(-2.0, 3.0, 11)).sum(-1))
    torch.testing.assert_close(net(obs), q)
    assert "support" not in net.state_dict()  # rebuilt from the config, not shipped with weights


def batch(n: int, reward: float) -> dict[str, torch.Tensor]:
    return {
        "obs": torch.zeros(n, 3),
        "actions": torch.zeros(n, dtype=torch.long),
        "rewards": torch.full((n,), reward),
        "next_obs": torch.zeros(n, 3),
        "terminateds": torch.ones(n, dtype=torch.bool),
        "discounts": torch.full((n,), 0.99),
        "weights": torch.ones(n),
    }


def test_distributional_loss_is_cross_entropy_to_the_projected_target() -> None:
    torch.manual_seed(0)
    online = QNetwork(3, 2, MODEL, dueling=True, num_atoms=5, v_min=-2.0, v_max=2.0)
    target = QNetwork(3, 2, MODEL, dueling=True, num_atoms=5, v_min=-2.0, v_max=2.0)
    data = batch(4, 0.5)  # terminal, reward 0.5: the target is half on atom 0.0, half on atom 1.0
    terms, priorities = dqn_loss(online, target, data, config=DQNConfig())
    log_p = online.distribution(data["obs"])[1][:, 0]
    expected = -(0.5 * log_p[:, 2] + 0.5 * log_p[:, 3])
    torch.testing.assert_close(priorities, expected.detach())
    torch.testing.assert_close(terms["total_loss"], expected.mean())
    torch.testing.assert_close(terms["target_q_mean"], torch.tensor(0.5))
    half = dict(data, weights=torch.tensor([0.5, 0.5, 0.5, 0.5]))
    torch.testing.assert_close(
        dqn_loss(online, target, half, config=DQNConfig())[0]["total_loss"], expected.mean() / 2
    )


def test_distributional_loss_drives_q_to_the_return() -> None:
    torch.manual_seed(0)
    online = QNetwork(3, 2, MODEL, dueling=False, num_atoms=21, v_min=-1.0, v_max=1.0, noisy=True)
    target = QNetwork(3, 2, MODEL, dueling=False, num_atoms=21, v_min=-1.0, v_max=1.0, noisy=True)
    opt = torch.optim.Adam(online.parameters(), lr=1e-2)
    for _ in range(300):
        reset_noise(online)
        terms, _ = dqn_loss(online, target, batch(8, 0.37), config=DQNConfig(double_q=False))
        opt.zero_grad()
        terms["total_loss"].backward()
        opt.step()
    set_noisy(online, False)
    assert online(torch.zeros(1, 3))[0, 0].item() == pytest.approx(0.37, abs=0.02)


def test_noisy_policy_explores_by_noise_and_evaluates_on_the_mean() -> None:
    space = gym.spaces.Box(-1, 1, (3,))
    options = {"epsilon": 0.0, "noisy": True, "sigma0": 2.0, "dueling": False}
    policy = QPolicy(space, gym.spaces.Discrete(4), MODEL, options)
    gen = torch.Generator().manual_seed(0)
    obs = torch.randn(256, 3)
    greedy = policy.act(obs, explore=False, generator=gen)["actions"]
    torch.testing.assert_close(policy.act(obs, explore=False, generator=gen)["actions"], greedy)
    explored = [policy.act(obs, explore=True, generator=gen)["actions"] for _ in range(5)]
    assert any(not torch.equal(a, greedy) for a in explored)
    assert not all(torch.equal(explored[0], a) for a in explored[1:])  # new noise every step


# -- config ----------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("config", "message"),
    [
        ({"num_atoms": 51, "v_min": 5.0, "v_max": 5.0}, r"v_min \(5.0\) must be below v_max"),
        ({"num_atoms": 0}, "num_atoms"),
        ({"noisy": True, "model": {"custom_model": "x:Y"}}, "noisy builds kuberl's own Q head"),
        ({"num_atoms": 51, "model": {"custom_model": "x:Y"}}, r"num_atoms > 1 \(C51\)"),
        ({"sigma0": 0.0}, "sigma0"),
    ],
)
@pytest.mark.parametrize("cls", [DQNConfig, APEXConfig])
def test_config_rejects_bad_rainbow_settings(cls: Any, config: dict[str, Any], message: str) -> None:
    with pytest.raises(ValidationError, match=message):
        cls.model_validate(config)


def test_noisy_dqn_explores_without_epsilon_unless_given() -> None:
    assert DQNConfig.model_validate({"noisy": True}).epsilon == [(0, 0.0)]
    assert DQNConfig.model_validate({"noisy": True, "epsilon": [[0, 0.1]]}).epsilon == [(0, 0.1)]
    assert DQNConfig.model_validate({}).epsilon == [(0, 1.0), (10_000, 0.05)]
    assert DQNConfig.model_validate({"numAtoms": 51, "vMin": -1, "vMax": 1}).num_atoms == 51


# -- the algorithms --------------------------------------------------------------------------------

RAINBOW = {
    "train_batch_size": 16,
    "rollout_fragment_length": 8,
    "buffer_size": 1000,
    "n_step": 3,
    "model": {"fcnet_hiddens": [16]},
    "num_atoms": 11,
    "v_min": 0.0,
    "v_max": 50.0,
    "noisy": True,
}


def test_rainbow_dqn_trains_and_restores(tmp_path: Path) -> None:
    config = {
        **RAINBOW,
        "learning_starts": 32,
        "num_updates_per_iteration": 2,
        "target_network_update_freq": 32,
        "prioritized_replay": True,
    }
    doc = job_doc("DQN", "CartPole-v1", seed=3, config=config, envs_per_runner=2)
    algo = build_algorithm(doc, run_dir=tmp_path / "a")
    try:
        assert isinstance(algo, DQN)
        assert isinstance(algo.buffer, PrioritizedReplayBuffer)
        for _ in range(4):
            result = algo.train()
        stats = result["learner"]["default_policy"]
        assert stats["epsilon"] == 0.0
        assert {"cross_entropy", "td_error_abs", "q_mean"} <= set(stats)
        assert len(set(algo.buffer.state()["priorities"][: len(algo.buffer)].tolist())) > 1
        uri = algo.save(str(tmp_path / "ckpt"))
        obs = np.random.default_rng(0).normal(size=(32, 4)).astype(np.float32)
        greedy = algo.compute_actions(obs, explore=False)
    finally:
        algo.stop()
    fresh = build_algorithm(doc, run_dir=tmp_path / "b")
    try:
        fresh.restore(uri)
        np.testing.assert_array_equal(fresh.compute_actions(obs, explore=False), greedy)
    finally:
        fresh.stop()


def test_rainbow_apex_trains_with_runner_priorities(tmp_path: Path) -> None:
    config = {
        **RAINBOW,
        "num_steps_sampled_before_learning_starts": 0,
        "training_intensity": 4.0,
        "target_network_update_freq": 4,
        "min_sample_timesteps_per_iteration": 64,
    }
    algo = build_algorithm(job_doc("APEX", "CartPole-v1", seed=5, config=config), run_dir=tmp_path)
    try:
        for _ in range(2):
            result = algo.train()
        stats = result["learner"]["default_policy"]
        assert stats["num_updates"] > 0
        assert "cross_entropy" in stats
    finally:
        algo.stop()
