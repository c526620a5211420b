"""A2C: the actor-critic loss and advantages against hand values, the update's batching, config
validation, and checkpoint round trips."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from torch import nn

from kuberl.algorithms.a2c import A2C
from kuberl.algorithms.families.actor_critic import (
    ActorCriticLearner,
    actor_critic_loss,
    advantages_and_targets,
)
from kuberl.build import build_algorithm
from kuberl.core.distributions import Categorical
from kuberl.core.models import ActorCritic
from kuberl.core.sample_batch import Columns, SampleBatch
from kuberl.spec import SpecError, parse_job
from kuberl.spec.algorithms import ModelConfig
from tests.fixtures.jobs import job_doc


class Fixed(nn.Module):
    """Logits [0, ln 3] (probabilities ¼, ¾) and the given values, whatever the observation."""

    def __init__(self, values: list[float]) -> None:
        super().__init__()
        self.logits = nn.Parameter(torch.tensor([0.0, math.log(3.0)]))
        self.values = nn.Parameter(torch.tensor(values))

    def forward(self, obs: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return self.logits.expand(len(obs), 2), self.values


def test_actor_critic_loss_matches_hand_computation() -> None:
    mb = {
        Columns.OBS: torch.zeros(2, 1),
        Columns.ACTIONS: torch.tensor([1, 0]),
        Columns.ADVANTAGES: torch.tensor([2.0, -1.0]),
        Columns.VALUE_TARGETS: torch.tensor([3.0, 1.0]),
    }
    terms = actor_critic_loss(
        Fixed([1.0, 2.0]),
        Categorical(),
        mb,
        vf_loss_coeff=0.5,
        entropy_coeff=0.01,
        normalize_advantages=False,
    )
    policy = -(2.0 * math.log(0.75) + (-1.0) * math.log(0.25)) / 2
    vf = 0.5 * ((1 - 3) ** 2 + (2 - 1) ** 2) / 2
    entropy = -(0.25 * math.log(0.25) + 0.75 * math.log(0.75))
    assert float(terms["policy_loss"].detach()) == pytest.approx(policy, rel=1e-6)
    assert float(terms["vf_loss"].detach()) == pytest.approx(vf, rel=1e-6)
    assert float(terms["entropy"].detach()) == pytest.approx(entropy, rel=1e-6)
    assert float(terms["total_loss"].detach()) == pytest.approx(policy + 0.5 * vf - 0.01 * entropy, rel=1e-6)


def test_policy_gradient_does_not_flow_into_the_advantage() -> None:
    module = Fixed([1.0, 2.0])
    mb = {
        Columns.OBS: torch.zeros(2, 1),
        Columns.ACTIONS: torch.tensor([1, 0]),
        Columns.ADVANTAGES: torch.tensor([2.0, -1.0], requires_grad=True),
        Columns.VALUE_TARGETS: torch.tensor([3.0, 1.0]),
    }
    terms = actor_critic_loss(
        module, Categorical(), mb, vf_loss_coeff=0.0, entropy_coeff=0.0, normalize_advantages=False
    )
    terms["total_loss"].backward()
    assert mb[Columns.ADVANTAGES].grad is None
    assert module.values.grad is None or float(module.values.grad.abs().sum()) == 0.0


def batch(rewards: list[float], next_values: list[float], *, term: int = -1, trunc: int = -1) -> SampleBatch:
    n = len(rewards)
    t = np.zeros((n, 1), dtype=bool)
    u = np.zeros((n, 1), dtype=bool)
    if term >= 0:
        t[term] = True
    if trunc >= 0:
        u[trunc] = True
    return SampleBatch(
        {
            Columns.REWARDS: np.array(rewards, dtype=np.float32)[:, None],
            Columns.VF_PREDS: np.ones((n, 1), dtype=np.float32),
            Columns.NEXT_VF_PREDS: np.array(next_values, dtype=np.float32)[:, None],
            Columns.TERMINATEDS: t,
            Columns.TRUNCATEDS: u,
        }
    )


def test_n_step_returns_bootstrap_at_truncation_and_fragment_end_only() -> None:
    # V(s) = 1 everywhere; step 1 is truncated with V(final obs) = 10; V after the fragment = 4.
    b = batch([1.0, 1.0, 1.0], [1.0, 10.0, 4.0], trunc=1)
    adv, targets = advantages_and_targets(b, gamma=0.5, lambda_=1.0, use_gae=False)
    np.testing.assert_allclose(targets[:, 0], [1 + 0.5 * (1 + 0.5 * 10), 1 + 0.5 * 10, 1 + 0.5 * 4])
    np.testing.assert_allclose(adv[:, 0], targets[:, 0] - 1.0)
    # The same with GAE λ = 1 (next values consistent with V(s) inside the episode).
    gae_adv, gae_targets = advantages_and_targets(b, gamma=0.5, lambda_=1.0, use_gae=True)
    np.testing.assert_allclose(gae_targets, targets, rtol=1e-6)
    np.testing.assert_allclose(gae_adv, adv, rtol=1e-6)


def test_termination_is_worth_zero() -> None:
    b = batch([1.0, 1.0, 1.0], [1.0, 10.0, 4.0], term=1)
    _, targets = advantages_and_targets(b, gamma=0.5, lambda_=1.0, use_gae=False)
    np.testing.assert_allclose(targets[:, 0], [1.5, 1.0, 3.0])


def flat_batch(n: int, seed: int = 0) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    return {
        Columns.OBS: rng.normal(size=(n, 4)).astype(np.float32),
        Columns.ACTIONS: rng.integers(0, 2, size=n),
        Columns.ADVANTAGES: rng.normal(size=n).astype(np.float32),
        Columns.VALUE_TARGETS: rng.normal(size=n).astype(np.float32),
        Columns.VF_PREDS: rng.normal(size=n).astype(np.float32),
    }


def learner(optimizer: str = "rmsprop") -> ActorCriticLearner:
    import gymnasium as gym

    torch.manual_seed(0)
    module = ActorCritic(gym.spaces.Box(-1, 1, (4,)), gym.spaces.Discrete(2), ModelConfig())
    return ActorCriticLearner(
        module,
        Categorical(),
        lr=1e-2,
        lr_schedule=None,
        grad_clip=None,
        device=torch.device("cpu"),
        optimizer=optimizer,  # type: ignore[arg-type]
        optimizer_eps=1e-5,
        rmsprop_alpha=0.99,
        vf_loss_coeff=0.5,
        entropy_coeff=0.01,
        normalize_advantages=False,
    )


def test_microbatches_accumulate_to_the_full_batch_gradient() -> None:
    data = flat_batch(12)
    full, micro = learner(), learner()
    gen = torch.Generator().manual_seed(0)
    s_full = full.update(data, timesteps=0, minibatch_size=None, microbatch_size=None, generator=gen)
    s_micro = micro.update(data, timesteps=0, minibatch_size=None, microbatch_size=5, generator=gen)
    assert s_full["num_grad_updates"] == s_micro["num_grad_updates"] == 1
    assert s_micro["total_loss"] == pytest.approx(s_full["total_loss"], rel=1e-5)
    for a, b in zip(full.module.parameters(), micro.module.parameters(), strict=True):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-6)


def test_minibatches_take_one_step_each() -> None:
    stats = learner("adam").update(
        flat_batch(12), timesteps=0, minibatch_size=4, microbatch_size=None, generator=torch.Generator()
    )
    assert stats["num_grad_updates"] == 3


def test_rmsprop_or_adam() -> None:
    assert isinstance(learner("rmsprop").optimizer, torch.optim.RMSprop)
    assert isinstance(learner("adam").optimizer, torch.optim.Adam)


def job(tmp_path: Path, config: dict[str, Any], algorithm: str = "A2C") -> dict[str, Any]:
    return job_doc(algorithm, "CartPole-v1", seed=3, name="a2c-test", run_dir=tmp_path, config=config)


@pytest.mark.parametrize(
    ("config", "message"),
    [
        ({"trainBatchSize": 100, "rolloutFragmentLength": 5}, "not both"),
        ({"useGae": False, "lambda": 0.9}, "lambda only applies"),
        ({"optimizer": "adam", "rmspropAlpha": 0.9}, "rmspropAlpha only applies"),
        ({"trainBatchSize": 100, "minibatchSize": 200}, "must not exceed"),
        ({"minibatchSize": 50, "microbatchSize": 60}, "must not exceed"),
    ],
)
def test_inconsistent_config_is_rejected_with_a_reason(
    tmp_path: Path, config: dict[str, Any], message: str
) -> None:
    with pytest.raises(SpecError, match=message):
        parse_job(job(tmp_path, config))


def test_config_round_trips_through_the_wire_form(tmp_path: Path) -> None:
    parsed = parse_job(job(tmp_path, {"rollout_fragment_length": 5, "lambda_": 0.95}))
    again = parse_job(parsed.to_wire())
    assert again.spec.config == parsed.spec.config


def test_fragment_length_sets_the_batch(tmp_path: Path) -> None:
    algo = build_algorithm(job(tmp_path, {"rolloutFragmentLength": 5}))
    try:
        assert algo.train()["num_env_steps_trained"] == 20
    finally:
        algo.stop()


def test_save_restore_gives_identical_actions(tmp_path: Path) -> None:
    algo = build_algorithm(job(tmp_path, {"trainBatchSize": 64, "minibatchSize": 32}))
    assert isinstance(algo, A2C)
    obs = np.random.default_rng(0).normal(size=(16, 4)).astype(np.float32)
    try:
        for _ in range(3):
            algo.train()
        uri = algo.save(str(tmp_path / "ckpt"))
        expected = algo.compute_actions(obs)
        state = algo.learner.get_state()
    finally:
        algo.stop()
    fresh = build_algorithm(job(tmp_path, {"trainBatchSize": 64, "minibatchSize": 32}))
    assert isinstance(fresh, A2C)
    try:
        fresh.restore(uri)
        np.testing.assert_array_equal(fresh.compute_actions(obs), expected)
        assert fresh.iteration == 3
        restored = fresh.learner.get_state()
        for k, v in state["module"].items():
            torch.testing.assert_close(restored["module"][k], v)
        assert restored["optimizer"]["state"].keys() == state["optimizer"]["state"].keys()
        for k, s in state["optimizer"]["state"].items():
            torch.testing.assert_close(restored["optimizer"]["state"][k]["square_avg"], s["square_avg"])
    finally:
        fresh.stop()


@pytest.mark.parametrize(
    ("algorithm", "config"),
    [
        ("A2C", {"trainBatchSize": 64}),
        ("A3C", {"minSampleTimestepsPerIteration": 80}),
        ("PG", {"trainBatchSize": 200}),
    ],
)
def test_continuous_actions_train(tmp_path: Path, algorithm: str, config: dict[str, Any]) -> None:
    doc = job(tmp_path, config, algorithm)
    doc["spec"]["env"] = "Pendulum-v1"
    algo = build_algorithm(doc)
    try:
        result = algo.train()
        actions = algo.compute_actions(np.zeros((3, 3), dtype=np.float32))
    finally:
        algo.stop()
    stats = result["learner"]["default_policy"]
    assert all(np.isfinite(stats[k]) for k in ("total_loss", "policy_loss", "vf_loss", "entropy"))
    assert actions.shape == (3, 1)
