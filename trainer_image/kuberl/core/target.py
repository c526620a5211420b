"""Target networks: hard copies (DQN, Mnih et al. 2015) and Polyak averaging (DDPG, Lillicrap et al.
2016, https://arxiv.org/abs/1509.02971)."""

from __future__ import annotations

import torch
from torch import nn


@torch.no_grad()
def polyak_update(target: nn.Module, source: nn.Module, tau: float) -> None:
    """target ← τ·source + (1 − τ)·target for every parameter, in place. Buffers (e.g. batch-norm
    statistics) are copied outright: averaging running statistics has no meaning."""
    if not 0.0 <= tau <= 1.0:
        raise ValueError(f"tau must lie in [0, 1], got {tau}")
    t_params = list(target.parameters())
    s_params = list(source.parameters())
    if len(t_params) != len(s_params):
        raise ValueError("target and source modules have different parameters")
    for t, s in zip(t_params, s_params, strict=True):
        t.lerp_(s, tau)
    for tb, sb in zip(target.buffers(), source.buffers(), strict=True):
        tb.copy_(sb)


@torch.no_grad()
def hard_update(target: nn.Module, source: nn.Module) -> None:
    """target ← source (parameters and buffers)."""
    target.load_state_dict(source.state_dict())
