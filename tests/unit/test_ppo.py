"""PPO's loss terms against values computed by hand, value clipping, KL early stop, lr schedule, and the
statistics computed per epoch equal to those computed per minibatch."""

from __future__ import annotations

import copy
import math
from collections.abc import Mapping

import gymnasium as gym
import numpy as np
import pytest
import torch
from torch import nn

from kuberl.algorithms.ppo import PPOLearner, explained_variance, ppo_loss
from kuberl.core.distributions import Categorical
from kuberl.core.models import build_model
from kuberl.core.sample_batch import Columns, SampleBatch
from kuberl.spec import PPOConfig


class Fixed(nn.Module):
    """Returns given logits and values whatever the observation (plus a parameter, so it can train)."""

    def __init__(self, logits: torch.Tensor, values: torch.Tensor) -> None:
        super().__init__()
        self.logits = nn.Parameter(logits.clone())
        self.values = nn.Parameter(values.clone())

    def forward(self, obs: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        n = obs.shape[0]
        if self.logits.shape[0] == n:
            return self.logits, self.values
        return self.logits.expand(n, -1), self.values.expand(n)


def minibatch(**kw: torch.Tensor) -> dict[str, torch.Tensor]:
    n = 2
    base = {
        Columns.OBS: torch.zeros(n, 1),
        Columns.ACTIONS: torch.tensor([0, 1]),
        Columns.ACTION_LOGP: torch.log(torch.tensor([0.5, 0.5])),
        Columns.ACTION_DIST_INPUTS: torch.zeros(n, 2),
        Columns.ADVANTAGES: torch.tensor([1.0, -1.0]),
        Columns.VALUE_TARGETS: torch.tensor([1.0, 0.0]),
        Columns.VF_PREDS: torch.tensor([0.0, 0.0]),
    }
    return {**base, **kw}


def test_clipped_surrogate_and_value_loss_by_hand() -> None:
    # New policy: p(a=0) = 0.8 for both samples → ratios 1.6 (sample 0, a=0) and 0.4 (sample 1, a=1).
    logits = torch.log(torch.tensor([[0.8, 0.2], [0.8, 0.2]]))
    module = Fixed(logits, torch.tensor([0.5, 0.5]))
    cfg = PPOConfig(clip_param=0.2, normalize_advantages=False, vf_loss_coeff=0.5, entropy_coeff=0.01)
    terms = ppo_loss(module, Categorical(), minibatch(), config=cfg, kl_coeff=0.0)
    # sample 0: min(1.6*1, 1.2*1) = 1.2; sample 1: min(0.4*-1, 0.8*-1) = -0.8 → surrogate mean 0.2
    assert terms["policy_loss"].item() == pytest.approx(-0.2)
    assert terms["vf_loss"].item() == pytest.approx(0.5 * ((0.5 - 1.0) ** 2 + 0.5**2) / 2)
    entropy = -(0.8 * math.log(0.8) + 0.2 * math.log(0.2))
    assert terms["entropy"].item() == pytest.approx(entropy)
    kl = 0.5 * math.log(0.5 / 0.8) + 0.5 * math.log(0.5 / 0.2)
    assert terms["kl"].item() == pytest.approx(kl)
    assert terms["clip_frac"].item() == pytest.approx(1.0)
    expected_total = -0.2 + 0.5 * terms["vf_loss"].item() - 0.01 * entropy
    assert terms["total_loss"].item() == pytest.approx(expected_total)


def test_value_clipping_takes_the_pessimistic_error() -> None:
    module = Fixed(torch.zeros(2, 2), torch.tensor([2.0, 2.0]))
    mb = minibatch(
        **{Columns.VALUE_TARGETS: torch.tensor([2.0, 2.0]), Columns.VF_PREDS: torch.tensor([0.0, 0.0])}
    )
    clipped = ppo_loss(module, Categorical(), mb, config=PPOConfig(vf_clip_param=0.5), kl_coeff=0.0)
    plain = ppo_loss(module, Categorical(), mb, config=PPOConfig(), kl_coeff=0.0)
    assert plain["vf_loss"].item() == pytest.approx(0.0)
    assert clipped["vf_loss"].item() == pytest.approx(0.5 * (0.5 - 2.0) ** 2)  # V clipped to 0 ± 0.5


def _batch(n: int = 64) -> SampleBatch:
    rng = np.random.default_rng(0)
    return SampleBatch(
        {
            Columns.OBS: rng.normal(size=(n, 1)).astype(np.float32),
            Columns.ACTIONS: rng.integers(0, 2, size=n),
            Columns.ACTION_LOGP: np.full(n, np.log(0.5), dtype=np.float32),
            Columns.ACTION_DIST_INPUTS: np.zeros((n, 2), dtype=np.float32),
            Columns.ADVANTAGES: rng.normal(size=n).astype(np.float32) * 10,
            Columns.VALUE_TARGETS: rng.normal(size=n).astype(np.float32),
            Columns.VF_PREDS: np.zeros(n, dtype=np.float32),
            Columns.REWARDS: np.zeros(n, dtype=np.float32),
        }
    )


def test_kl_early_stop_cuts_the_epochs() -> None:
    cfg = PPOConfig(
        num_epochs=20, minibatch_size=16, train_batch_size=64, lr=0.5, kl_target=1e-4, kl_early_stop=True
    )
    learner = PPOLearner(Fixed(torch.zeros(1, 2), torch.zeros(1)), Categorical(), cfg, torch.device("cpu"))
    stats = learner.update(_batch(), timesteps=0, generator=torch.Generator().manual_seed(0))
    assert stats["epochs"] < 20
    free = PPOConfig(num_epochs=20, minibatch_size=16, train_batch_size=64, lr=0.5)
    learner = PPOLearner(Fixed(torch.zeros(1, 2), torch.zeros(1)), Categorical(), free, torch.device("cpu"))
    assert learner.update(_batch(), timesteps=0, generator=torch.Generator().manual_seed(0))["epochs"] == 20


def test_lr_schedule_sets_the_optimizer_rate() -> None:
    cfg = PPOConfig(
        lr_schedule=[(0, 1e-3), (1000, 1e-4)], train_batch_size=64, minibatch_size=16, num_epochs=1
    )
    learner = PPOLearner(Fixed(torch.zeros(1, 2), torch.zeros(1)), Categorical(), cfg, torch.device("cpu"))
    stats = learner.update(_batch(), timesteps=500, generator=torch.Generator().manual_seed(0))
    assert stats["lr"] == pytest.approx(5.5e-4)
    assert learner.optimizer.param_groups[0]["lr"] == pytest.approx(5.5e-4)


def test_adaptive_kl_coefficient_grows_when_kl_is_high() -> None:
    cfg = PPOConfig(
        kl_coeff=0.2, kl_target=1e-6, lr=0.5, train_batch_size=64, minibatch_size=16, num_epochs=2
    )
    learner = PPOLearner(Fixed(torch.zeros(1, 2), torch.zeros(1)), Categorical(), cfg, torch.device("cpu"))
    stats = learner.update(_batch(), timesteps=0, generator=torch.Generator().manual_seed(0))
    assert stats["kl_coeff"] == pytest.approx(0.3)


def test_explained_variance() -> None:
    y = np.array([1.0, 2.0, 3.0])
    assert explained_variance(y, y) == pytest.approx(1.0)
    assert explained_variance(np.zeros(3), y) == pytest.approx(1.0 - np.var(y) / np.var(y) + 0.0)


class PerMinibatchStatistics(PPOLearner):
    """PPO's learner as it was: every statistic computed inside each minibatch's loss."""

    def loss(self, mb: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        return ppo_loss(self.train_module, self.dist, mb, config=self.config, kl_coeff=self.kl_coeff)


@pytest.mark.parametrize(
    "weights",
    [{}, {"entropy_coeff": 0.01, "kl_coeff": 0.2}, {"kl_early_stop": True, "kl_target": 1e-3}],
    ids=["statistics only", "entropy and kl in the loss", "kl early stop"],
)
def test_epoch_statistics_equal_per_minibatch_ones(weights: dict[str, float]) -> None:
    cfg = PPOConfig(
        train_batch_size=64,
        minibatch_size=16,
        num_epochs=6,
        lr=0.05,
        model={"fcnet_hiddens": [8], "vf_share_layers": False},
        **weights,
    )
    torch.manual_seed(0)
    module = build_model(gym.spaces.Box(-1, 1, (1,)), gym.spaces.Discrete(2), cfg.model)
    batched = PPOLearner(copy.deepcopy(module), Categorical(), cfg, torch.device("cpu"))
    inline = PerMinibatchStatistics(copy.deepcopy(module), Categorical(), cfg, torch.device("cpu"))
    for i in range(2):
        got = batched.update(_batch(), timesteps=i, generator=torch.Generator().manual_seed(i))
        want = inline.update(_batch(), timesteps=i, generator=torch.Generator().manual_seed(i))
        assert got == want
        assert {"entropy", "kl", "clip_frac"} <= got.keys()
    assert got["clip_frac"] > 0.0  # the policy moved: the statistics are not trivially zero
    for a, b in zip(batched.module.parameters(), inline.module.parameters(), strict=True):
        assert torch.equal(a, b)
