"""Action distributions for MultiDiscrete, MultiBinary and Tuple/Dict spaces (kuberl.core.distributions)
against torch.distributions summed by hand, and the flat action layout's way back to the env's own
structure (kuberl.core.action_spaces)."""

from __future__ import annotations

from typing import Any

import gymnasium as gym
import numpy as np
import pytest
import torch
from torch import distributions as D

from kuberl.algorithms.base import check_action_space
from kuberl.core.action_spaces import (
    action_space_kind,
    action_space_problem,
    action_width,
    to_env,
    to_env_single,
)
from kuberl.core.models import action_distribution, dist_input_dim
from kuberl.spec import SpecError
from kuberl.spec.capabilities import ALL_SPACES, BOX, DISCRETE

B = 64
MD = gym.spaces.MultiDiscrete([3, 2, 5])
MB = gym.spaces.MultiBinary(4)
BOX2 = gym.spaces.Box(-1.0, 1.0, (2,), np.float32)
# Gymnasium sorts a Dict's keys: the flat layout follows that order (aim, bits, dials, pick).
DICT = gym.spaces.Dict({"pick": gym.spaces.Discrete(3, start=1), "aim": BOX2, "dials": MD, "bits": MB})
TUPLE = gym.spaces.Tuple((gym.spaces.Discrete(4), gym.spaces.Tuple((MB, BOX2))))


def inputs(space: gym.Space[Any], seed: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.randn(B, dist_input_dim(space), generator=g)


def sample(space: gym.Space[Any], x: torch.Tensor) -> torch.Tensor:
    return action_distribution(space).sample(x, torch.Generator().manual_seed(1))


def multi_categorical(x: torch.Tensor, nvec: list[int]) -> list[D.Categorical]:
    return [D.Categorical(logits=part) for part in torch.split(x, nvec, dim=-1)]


def test_multi_categorical_is_a_sum_of_categoricals() -> None:
    x, x2 = inputs(MD), inputs(MD, seed=5)
    a = sample(MD, x)
    assert a.shape == (B, 3)
    assert a.dtype == torch.int64
    assert all(int(a[:, i].min()) >= 0 and int(a[:, i].max()) < n for i, n in enumerate([3, 2, 5]))
    cats, cats2 = multi_categorical(x, [3, 2, 5]), multi_categorical(x2, [3, 2, 5])
    dist = action_distribution(MD)
    torch.testing.assert_close(dist.logp(x, a), sum(c.log_prob(a[:, i]) for i, c in enumerate(cats)))
    torch.testing.assert_close(dist.entropy(x), sum(c.entropy() for c in cats))
    torch.testing.assert_close(
        dist.kl(x, x2), sum(D.kl_divergence(c, c2) for c, c2 in zip(cats, cats2, strict=False))
    )
    greedy = dist.deterministic(x)
    assert torch.equal(greedy, torch.stack([c.logits.argmax(-1) for c in cats], dim=-1))


def test_multi_categorical_samples_follow_the_logits() -> None:
    # One dimension always picks index 2, the other is uniform over two: the empirical rates show it.
    x = torch.tensor([[-30.0, -30.0, 30.0, 0.0, 0.0]]).repeat(4000, 1)
    a = action_distribution(gym.spaces.MultiDiscrete([3, 2])).sample(x, torch.Generator().manual_seed(0))
    assert bool((a[:, 0] == 2).all())
    assert 0.45 < float(a[:, 1].float().mean()) < 0.55


def test_bernoulli_is_a_sum_of_bits() -> None:
    x, x2 = inputs(MB), inputs(MB, seed=5)
    a = sample(MB, x)
    assert a.shape == (B, 4)
    assert set(a.unique().tolist()) <= {0, 1}
    bern, bern2 = D.Bernoulli(logits=x), D.Bernoulli(logits=x2)
    dist = action_distribution(MB)
    torch.testing.assert_close(dist.logp(x, a), bern.log_prob(a.float()).sum(-1))
    torch.testing.assert_close(dist.entropy(x), bern.entropy().sum(-1))
    torch.testing.assert_close(dist.kl(x, x2), D.kl_divergence(bern, bern2).sum(-1))
    assert torch.equal(dist.deterministic(x), (x > 0).long())
    rates = (
        action_distribution(MB).sample(torch.tensor([[2.0, -2.0, 0.0, 30.0]]).repeat(4000, 1)).float().mean(0)
    )
    torch.testing.assert_close(rates, torch.sigmoid(torch.tensor([2.0, -2.0, 0.0, 30.0])), atol=0.03, rtol=0)


def dict_parts(x: torch.Tensor) -> tuple[D.Categorical, D.Normal, list[D.Categorical], D.Bernoulli]:
    aim, bits, dials, pick = torch.split(x, [4, 4, 10, 3], dim=-1)
    mean, log_std = torch.chunk(aim, 2, dim=-1)
    return (
        D.Categorical(logits=pick),
        D.Normal(mean, log_std.clamp(-20.0, 2.0).exp()),
        multi_categorical(dials, [3, 2, 5]),
        D.Bernoulli(logits=bits),
    )


def test_composite_is_a_sum_over_its_components() -> None:
    assert dist_input_dim(DICT) == 3 + 4 + 10 + 4
    assert action_width(DICT) == 1 + 2 + 3 + 4
    x, x2 = inputs(DICT), inputs(DICT, seed=5)
    a = sample(DICT, x)
    assert a.shape == (B, 10)
    assert a.dtype == torch.float32
    pick, aim, dials, bits = dict_parts(x)
    pick2, aim2, dials2, bits2 = dict_parts(x2)
    dist = action_distribution(DICT)
    assert list(DICT.spaces) == ["aim", "bits", "dials", "pick"]
    manual_logp = (
        aim.log_prob(a[:, 0:2]).sum(-1)
        + bits.log_prob(a[:, 2:6]).sum(-1)
        + sum(c.log_prob(a[:, 6 + i].long()) for i, c in enumerate(dials))
        + pick.log_prob(a[:, 9].long())
    )
    torch.testing.assert_close(dist.logp(x, a), manual_logp)
    manual_entropy = (
        pick.entropy() + aim.entropy().sum(-1) + sum(c.entropy() for c in dials) + bits.entropy().sum(-1)
    )
    torch.testing.assert_close(dist.entropy(x), manual_entropy)
    manual_kl = (
        D.kl_divergence(pick, pick2)
        + D.kl_divergence(aim, aim2).sum(-1)
        + sum(D.kl_divergence(c, c2) for c, c2 in zip(dials, dials2, strict=False))
        + D.kl_divergence(bits, bits2).sum(-1)
    )
    torch.testing.assert_close(dist.kl(x, x2), manual_kl)


def test_composite_logp_takes_time_major_leading_dims() -> None:
    # V-trace and the LSTM learners hand distributions [T, B, ...] inputs.
    x = inputs(TUPLE).reshape(8, 8, -1)
    dist = action_distribution(TUPLE)
    a = dist.sample(x)
    assert a.shape == (8, 8, action_width(TUPLE))
    torch.testing.assert_close(dist.logp(x, a).reshape(-1), dist.logp(x.reshape(B, -1), a.reshape(B, -1)))


@pytest.mark.parametrize(
    "space", [MD, MB, DICT, TUPLE, gym.spaces.MultiDiscrete([[2, 3], [4, 2]], start=[[1, 0], [0, -1]])]
)
def test_actions_reach_the_env_in_its_own_structure(space: gym.Space[Any]) -> None:
    flat = sample(space, inputs(space)).numpy()
    batched = to_env(space, flat)
    vector_space = gym.vector.utils.batch_space(space, B)
    assert vector_space.contains(batched), batched
    for row in range(3):
        single = to_env_single(space, flat[row])
        assert space.contains(single), single


def test_start_offsets_and_clipping_on_the_way_to_the_env() -> None:
    flat = np.array([[5.0, -5.0, 1.0, 0.0, 1.0, 1.0, 2.0, 1.0, 4.0, 2.0]], dtype=np.float32)
    action = to_env_single(DICT, flat[0])
    assert action["pick"] == 3  # index 2 of Discrete(3, start=1)
    np.testing.assert_array_equal(action["aim"], [1.0, -1.0])  # clipped to the Box
    np.testing.assert_array_equal(action["dials"], [2, 1, 4])
    np.testing.assert_array_equal(action["bits"], [1, 0, 1, 1])
    md = gym.spaces.MultiDiscrete([3, 3], start=[-1, 10])
    np.testing.assert_array_equal(to_env_single(md, np.array([0, 2])), [-1, 12])


def test_vector_env_steps_with_the_converted_actions() -> None:
    env = gym.vector.SyncVectorEnv([lambda: _make("dict"), lambda: _make("dict")])
    env.reset(seed=0)
    dist = action_distribution(env.single_action_space)
    flat = dist.sample(torch.zeros(2, dist_input_dim(env.single_action_space))).numpy()
    _, reward, *_ = env.step(to_env(env.single_action_space, flat))
    assert reward.shape == (2,)
    env.close()


def _make(kind: str) -> gym.Env[Any, Any]:
    from kuberl.envs import make_buttons

    return make_buttons({"action": kind})


@pytest.mark.parametrize(
    ("space", "kind"),
    [
        (gym.spaces.Discrete(2), "discrete"),
        (BOX2, "box"),
        (MD, "multi_discrete"),
        (MB, "multi_binary"),
        (DICT, "dict"),
        (TUPLE, "tuple"),
        (gym.spaces.Box(0, 5, (2,), np.int64), None),
        (gym.spaces.Text(5), None),
        (gym.spaces.Tuple((gym.spaces.Discrete(2), gym.spaces.Text(5))), None),
    ],
)
def test_action_space_kinds(space: gym.Space[Any], kind: str | None) -> None:
    assert action_space_kind(space) == kind
    problem = action_space_problem("PPO", ALL_SPACES, space)
    assert (problem is None) == (kind is not None)


@pytest.mark.parametrize(("algorithm", "kinds"), [("DQN", DISCRETE), ("TD3", BOX)])
@pytest.mark.parametrize("space", [MD, MB, DICT, TUPLE])
def test_single_space_algorithms_refuse_the_new_kinds(
    algorithm: str, kinds: Any, space: gym.Space[Any]
) -> None:
    with pytest.raises(SpecError) as err:
        check_action_space(algorithm, kinds, space)
    assert err.value.first_path == "spec.env"
    assert f"{algorithm} acts in" in str(err.value)
    assert type(space).__name__ in str(err.value)


def test_the_policy_gradient_family_takes_every_kind() -> None:
    from kuberl.spec.algorithms import capabilities

    caps = capabilities()
    for name in ("PPO", "A2C", "PG", "IMPALA", "APPO", "A3C"):
        assert caps[name].action_spaces == ALL_SPACES, name
    for name in ("DQN", "APEX", "SAC", "TD3", "DDPG", "CQL"):
        assert not caps[name].action_spaces & {"multi_discrete", "multi_binary", "tuple", "dict"}, name


def test_external_multidiscrete_actions_round_trip_in_nvec_shape() -> None:
    # The policy server sends a client its env's shape and takes it back in the policy's flat layout.
    from kuberl.external.spaces import action_to_json, validate_action

    space = gym.spaces.MultiDiscrete([[2, 3], [4, 2]])
    flat = action_distribution(space).sample(inputs(space))[0].numpy()
    sent = action_to_json(space, flat)
    assert space.contains(np.asarray(sent))
    np.testing.assert_array_equal(validate_action(space, sent), flat)


def test_an_action_mask_with_a_multidiscrete_space_is_refused_at_preflight() -> None:
    from kuberl.preflight import check_action_masks
    from kuberl.spec import parse_job

    masked_obs = gym.spaces.Dict({"obs": BOX2, "action_mask": gym.spaces.MultiBinary(8)})
    job = parse_job(
        {
            "apiVersion": "kuberl.io/v1alpha1",
            "kind": "RLTrainingJob",
            "metadata": {"name": "masked"},
            "spec": {"algorithm": "PPO", "env": "tests.ma_envs:make_team_buttons", "multiAgent": {}},
        }
    )
    check_action_masks(job, [(masked_obs, gym.spaces.Discrete(8)), (BOX2, MD)])  # accepted
    with pytest.raises(SpecError) as err:
        check_action_masks(job, [(masked_obs, MD)])
    assert err.value.first_path == "spec.env"
    assert "action masks apply to Discrete action spaces only" in str(err.value)
