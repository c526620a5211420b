"""SampleBatch, the observation filter, schedules and action distributions."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from kuberl.core.distributions import Categorical, DiagGaussian
from kuberl.core.normalizer import RunningStats
from kuberl.core.sample_batch import Columns, SampleBatch
from kuberl.core.schedules import piecewise_linear


def test_sample_batch_concat_and_flatten_keep_time_major_order() -> None:
    a = SampleBatch({Columns.REWARDS: np.arange(6).reshape(3, 2), Columns.OBS: np.zeros((3, 2, 4))})
    b = SampleBatch({Columns.REWARDS: np.arange(6, 9).reshape(3, 1), Columns.OBS: np.ones((3, 1, 4))})
    c = SampleBatch.concat_envs([a, b])
    assert c.shape == (3, 3)
    assert c.env_steps == 9
    flat = c.flatten()
    assert flat[Columns.OBS].shape == (9, 4)
    np.testing.assert_array_equal(flat[Columns.REWARDS], [0, 1, 6, 2, 3, 7, 4, 5, 8])


def test_minibatches_cover_each_sample_once_and_drop_remainder() -> None:
    batch = SampleBatch({Columns.REWARDS: np.arange(10)})
    seen = np.concatenate([mb[Columns.REWARDS] for mb in batch.minibatches(3, np.random.default_rng(0))])
    assert len(seen) == 9
    assert len(set(seen.tolist())) == 9


def test_running_stats_merge_equals_stats_of_concatenation() -> None:
    rng = np.random.default_rng(1)
    x, y = rng.normal(3.0, 2.0, size=(100, 4)), rng.normal(-1.0, 0.5, size=(37, 4))
    s = RunningStats.from_batch(x)
    s.merge(RunningStats.from_batch(y))
    both = np.concatenate([x, y])
    np.testing.assert_allclose(s.mean, both.mean(0), rtol=1e-10)
    np.testing.assert_allclose(s.std, both.std(0, ddof=1), rtol=1e-10)
    restored = RunningStats.from_state(s.state())
    np.testing.assert_allclose(restored.normalize(both), s.normalize(both))


def test_piecewise_linear_schedule() -> None:
    sched = [(0, 1.0), (100, 0.0)]
    assert piecewise_linear(sched, 0) == 1.0
    assert piecewise_linear(sched, 50) == pytest.approx(0.5)
    assert piecewise_linear(sched, 1000) == 0.0


def test_categorical_matches_torch_distributions() -> None:
    torch.manual_seed(0)
    logits, new = torch.randn(5, 3), torch.randn(5, 3)
    actions = torch.tensor([0, 1, 2, 1, 0])
    ref, ref_new = torch.distributions.Categorical(logits=logits), torch.distributions.Categorical(logits=new)
    d = Categorical()
    torch.testing.assert_close(d.logp(logits, actions), ref.log_prob(actions))
    torch.testing.assert_close(d.entropy(logits), ref.entropy())
    torch.testing.assert_close(d.kl(logits, new), torch.distributions.kl_divergence(ref, ref_new))
    samples = torch.stack([d.sample(logits[:1].expand(4000, 3)) for _ in range(1)]).flatten()
    freq = torch.bincount(samples, minlength=3).float() / 4000
    torch.testing.assert_close(freq, ref.probs[0], atol=0.03, rtol=0)


def test_diag_gaussian_matches_torch_distributions() -> None:
    torch.manual_seed(0)
    mean, log_std = torch.randn(5, 2), torch.randn(5, 2) * 0.3
    inputs = torch.cat([mean, log_std], -1)
    new = torch.cat([mean + 0.1, log_std - 0.2], -1)
    actions = torch.randn(5, 2)
    ref = torch.distributions.Normal(mean, log_std.exp())
    ref_new = torch.distributions.Normal(mean + 0.1, (log_std - 0.2).exp())
    d = DiagGaussian()
    torch.testing.assert_close(d.logp(inputs, actions), ref.log_prob(actions).sum(-1))
    torch.testing.assert_close(d.entropy(inputs), ref.entropy().sum(-1))
    torch.testing.assert_close(d.kl(inputs, new), torch.distributions.kl_divergence(ref, ref_new).sum(-1))
    torch.testing.assert_close(d.deterministic(inputs), mean)
