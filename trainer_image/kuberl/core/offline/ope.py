"""Off-policy estimation: the value of a target policy π from episodes logged by a behaviour policy β.

Pure functions of per-episode arrays (rewards, log β(a|s) as logged, log π(a|s) of the policy being
evaluated), per-decision as in Precup et al. 2000 (https://scholarworks.umass.edu/cs_faculty_pubs/80)
and RLlib's estimators: with w_t = Π_{k≤t} π(a_k|s_k)/β(a_k|s_k),

    IS  = (1/n) Σ_i Σ_t γ^t w_{i,t} r_{i,t}
    WIS = Σ_t γ^t (Σ_i w_{i,t} r_{i,t}) / (Σ_i w_{i,t})

After an episode's end its reward is 0 and its weight stays at its last value (Thomas 2015,
"Safe reinforcement learning", section 3.9), so episodes of different lengths are averaged alike.
IS is unbiased with a variance that grows with the horizon; WIS is biased but bounded by the rewards.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class Episode:
    rewards: np.ndarray
    behaviour_logp: np.ndarray
    target_logp: np.ndarray


def _padded(episodes: Sequence[Episode], gamma: float) -> tuple[np.ndarray, np.ndarray]:
    """(discounted rewards γ^t r [n, T], log w [n, T]) with rewards 0 and log w held after each end."""
    n, horizon = len(episodes), max(len(e.rewards) for e in episodes)
    rewards = np.zeros((n, horizon))
    log_w = np.zeros((n, horizon))
    for i, e in enumerate(episodes):
        length = len(e.rewards)
        rewards[i, :length] = e.rewards
        cum = np.cumsum(np.asarray(e.target_logp, np.float64) - np.asarray(e.behaviour_logp, np.float64))
        log_w[i, :length] = cum
        log_w[i, length:] = cum[-1]
    return rewards * gamma ** np.arange(horizon), log_w


def behaviour_value(episodes: Sequence[Episode], gamma: float) -> float:
    """The logged policy's own discounted return, averaged over episodes."""
    disc, _ = _padded(episodes, gamma)
    return float(disc.sum(1).mean())


def importance_sampling(episodes: Sequence[Episode], gamma: float) -> float:
    """Per-decision importance sampling estimate of π's discounted return."""
    if not episodes:
        raise ValueError("off-policy estimation needs at least one episode")
    disc, log_w = _padded(episodes, gamma)
    return float((np.exp(log_w) * disc).sum(1).mean())


def weighted_importance_sampling(episodes: Sequence[Episode], gamma: float) -> float:
    """Per-decision weighted importance sampling estimate of π's discounted return."""
    if not episodes:
        raise ValueError("off-policy estimation needs at least one episode")
    disc, log_w = _padded(episodes, gamma)
    # Normalising per step makes the common factor cancel: subtract the max for overflow safety.
    w = np.exp(log_w - log_w.max(0, keepdims=True))
    return float(((w * disc).sum(0) / w.sum(0)).sum())


def estimate(episodes: Sequence[Episode], gamma: float) -> dict[str, float]:
    """The result dict's `off_policy_estimation`: both estimators, the behaviour value, the count."""
    return {
        "is": importance_sampling(episodes, gamma),
        "wis": weighted_importance_sampling(episodes, gamma),
        "v_behaviour": behaviour_value(episodes, gamma),
        "episodes": float(len(episodes)),
    }
