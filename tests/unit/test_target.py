"""Target-network updates: Polyak averaging and hard copies."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from kuberl.core.target import hard_update, polyak_update


def pair() -> tuple[nn.Sequential, nn.Sequential]:
    torch.manual_seed(0)
    src = nn.Sequential(nn.Linear(3, 4), nn.BatchNorm1d(4), nn.Linear(4, 2))
    tgt = nn.Sequential(nn.Linear(3, 4), nn.BatchNorm1d(4), nn.Linear(4, 2))
    src.get_buffer("1.running_mean").fill_(2.0)
    return tgt, src


def test_polyak_update_moves_tau_of_the_way() -> None:
    tgt, src = pair()
    before = [p.detach().clone() for p in tgt.parameters()]
    polyak_update(tgt, src, 0.1)
    for b, t, s in zip(before, tgt.parameters(), src.parameters(), strict=True):
        torch.testing.assert_close(t, 0.1 * s + 0.9 * b)
        assert t.grad is None
    torch.testing.assert_close(
        tgt.get_buffer("1.running_mean"), src.get_buffer("1.running_mean")
    )  # buffers copied


def test_polyak_extremes() -> None:
    tgt, src = pair()
    before = [p.detach().clone() for p in tgt.parameters()]
    polyak_update(tgt, src, 0.0)
    for b, t in zip(before, tgt.parameters(), strict=True):
        torch.testing.assert_close(t, b)
    polyak_update(tgt, src, 1.0)
    for t, s in zip(tgt.parameters(), src.parameters(), strict=True):
        torch.testing.assert_close(t, s)
    with pytest.raises(ValueError, match="tau"):
        polyak_update(tgt, src, 1.5)


def test_polyak_does_not_track_gradients_and_source_is_untouched() -> None:
    tgt, src = pair()
    src_before = [p.detach().clone() for p in src.parameters()]
    polyak_update(tgt, src, 0.5)
    for p in tgt.parameters():
        assert p.requires_grad
        assert p.grad_fn is None
    for b, s in zip(src_before, src.parameters(), strict=True):
        torch.testing.assert_close(s, b)


def test_hard_update_copies_everything_and_decouples() -> None:
    tgt, src = pair()
    hard_update(tgt, src)
    for t, s in zip(tgt.state_dict().values(), src.state_dict().values(), strict=True):
        torch.testing.assert_close(t, s)
    with torch.no_grad():
        next(src.parameters()).add_(1.0)
    assert not torch.equal(next(tgt.parameters()), next(src.parameters()))
