"""Distributional (categorical) value primitives: C51's fixed support and the projection of a Bellman
target distribution onto it (Bellemare, Dabney & Munos 2017, https://arxiv.org/abs/1707.06887,
Algorithm 1). Pure functions of tensors, like kuberl.core.returns."""

from __future__ import annotations

import torch


def categorical_support(v_min: float, v_max: float, num_atoms: int) -> torch.Tensor:
    """The atoms z_i = v_min + i·Δz, Δz = (v_max − v_min)/(N − 1), i = 0 … N−1 (float32 [N])."""
    if num_atoms < 2:
        raise ValueError(f"a categorical support needs at least 2 atoms, got {num_atoms}")
    if not v_min < v_max:
        raise ValueError(f"v_min ({v_min}) must be below v_max ({v_max})")
    return torch.linspace(v_min, v_max, num_atoms, dtype=torch.float32)


def categorical_projection(
    probs: torch.Tensor, rewards: torch.Tensor, discounts: torch.Tensor, support: torch.Tensor
) -> torch.Tensor:
    """Φ(R + γ^k·Z): the distribution with probabilities `probs` [B, N] on `support` [N], shifted by
    `rewards` [B] and scaled by `discounts` [B] (γ^k, already 0 at terminal states), clipped to
    [v_min, v_max] and split between the two nearest atoms in proportion to distance ([B, N]; rows
    keep their total mass).

    An atom that lands exactly on the grid (b integer, so floor = ceil) gives all its mass to that atom;
    Algorithm 1 as printed drops it there (both shares are 0)."""
    n = support.shape[0]
    v_min, v_max = support[0], support[-1]
    delta = (v_max - v_min) / (n - 1)
    tz = (rewards.unsqueeze(-1) + discounts.unsqueeze(-1) * support).clamp(v_min, v_max)
    b = ((tz - v_min) / delta).clamp(0, n - 1)
    lower, upper = b.floor(), b.ceil()
    w_upper = b - lower
    w_lower = 1.0 - w_upper  # = upper − b off the grid, 1 on it
    out = torch.zeros_like(probs)
    out.scatter_add_(-1, lower.long(), probs * w_lower)
    out.scatter_add_(-1, upper.long(), probs * w_upper)
    return out
