"""Return estimators as pure numpy functions over time-major [T, N] arrays."""

from __future__ import annotations

import numpy as np


def gae(
    rewards: np.ndarray,
    values: np.ndarray,
    next_values: np.ndarray,
    terminateds: np.ndarray,
    truncateds: np.ndarray,
    *,
    gamma: float,
    lambda_: float,
) -> tuple[np.ndarray, np.ndarray]:
    """Generalized Advantage Estimation (Schulman et al. 2016, https://arxiv.org/abs/1506.02438).

    `next_values[t]` is V(s_{t+1}): at a truncated step it must be V(final observation), so the
    time-limited episode bootstraps; at a terminated step it is ignored (the future is worth 0).
    The recursion stops at every episode end (terminated or truncated) so advantages never leak
    across episodes. Returns (advantages, value_targets), both float32 [T, N].
    """
    not_terminal = 1.0 - terminateds.astype(np.float32)
    not_done = 1.0 - np.logical_or(terminateds, truncateds).astype(np.float32)
    deltas = rewards + gamma * next_values * not_terminal - values
    advantages = np.zeros_like(deltas, dtype=np.float32)
    running = np.zeros(deltas.shape[1:], dtype=np.float32)
    decay = gamma * lambda_
    for t in range(deltas.shape[0] - 1, -1, -1):
        running = deltas[t] + decay * not_done[t] * running
        advantages[t] = running
    return advantages, (advantages + values).astype(np.float32)


def discounted_returns(
    rewards: np.ndarray,
    next_values: np.ndarray,
    terminateds: np.ndarray,
    truncateds: np.ndarray,
    *,
    gamma: float,
) -> np.ndarray:
    """Monte-Carlo returns with bootstrapping at truncation and at the end of the fragment (GAE with λ=1)."""
    zeros = np.zeros_like(rewards, dtype=np.float32)
    advantages, _ = gae(rewards, zeros, next_values, terminateds, truncateds, gamma=gamma, lambda_=1.0)
    return advantages
