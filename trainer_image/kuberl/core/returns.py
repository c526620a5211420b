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
    """Monte-Carlo returns G_t = r_t + γ·G_{t+1} inside an episode, bootstrapped with `next_values`
    only where the recursion is cut: at a truncation (V(final observation)) and after the fragment's
    last step. A terminated step's future is worth 0. (The λ = 1 case of GAE, without a baseline.)"""
    not_terminal = 1.0 - terminateds.astype(np.float32)
    done = np.logical_or(terminateds, truncateds)
    returns = np.zeros_like(rewards, dtype=np.float32)
    running = next_values[-1].astype(np.float32)
    for t in range(rewards.shape[0] - 1, -1, -1):
        tail = np.where(done[t], next_values[t] * not_terminal[t], running)
        running = (rewards[t] + gamma * tail).astype(np.float32)
        returns[t] = running
    return returns
