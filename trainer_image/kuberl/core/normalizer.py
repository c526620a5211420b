"""Running mean/std observation filter (RLlib's MeanStdFilter), mergeable across runners.

Runners normalize with a frozen copy during a rollout and report the raw statistics they saw;
the driver merges them (Chan et al.'s parallel variance) and broadcasts the result with the weights,
so every runner normalizes identically and the state is checkpointed once.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np


@dataclass
class RunningStats:
    shape: tuple[int, ...]
    count: float = 0.0
    mean: np.ndarray = field(default_factory=lambda: np.zeros(0))
    m2: np.ndarray = field(default_factory=lambda: np.zeros(0))

    def __post_init__(self) -> None:
        if self.mean.shape != self.shape:
            self.mean = np.zeros(self.shape, dtype=np.float64)
        if self.m2.shape != self.shape:
            self.m2 = np.zeros(self.shape, dtype=np.float64)

    @classmethod
    def from_batch(cls, x: np.ndarray) -> RunningStats:
        x = x.reshape(-1, *x.shape[-1:]).astype(np.float64)
        mean = x.mean(axis=0)
        return cls(shape=mean.shape, count=float(len(x)), mean=mean, m2=((x - mean) ** 2).sum(axis=0))

    def merge(self, other: RunningStats) -> None:
        if other.count == 0:
            return
        total = self.count + other.count
        delta = other.mean - self.mean
        self.mean = self.mean + delta * (other.count / total)
        self.m2 = self.m2 + other.m2 + delta**2 * (self.count * other.count / total)
        self.count = total

    @property
    def std(self) -> np.ndarray:
        var = self.m2 / max(self.count - 1.0, 1.0) if self.count > 1 else np.ones(self.shape)
        return np.sqrt(np.maximum(var, 1e-8))

    def normalize(self, x: np.ndarray, clip: float = 10.0) -> np.ndarray:
        if self.count < 2:
            return x.astype(np.float32)
        return np.clip((x - self.mean) / self.std, -clip, clip).astype(np.float32)

    def state(self) -> dict[str, Any]:
        return {"count": self.count, "mean": self.mean.tolist(), "m2": self.m2.tolist()}

    @classmethod
    def from_state(cls, state: dict[str, Any]) -> RunningStats:
        mean = np.asarray(state["mean"], dtype=np.float64)
        m2 = np.asarray(state["m2"], dtype=np.float64)
        return cls(shape=mean.shape, count=float(state["count"]), mean=mean, m2=m2)

    def copy(self) -> RunningStats:
        return RunningStats(shape=self.shape, count=self.count, mean=self.mean.copy(), m2=self.m2.copy())


# SB3's VecNormalize and Gymnasium's NormalizeReward add this to the variance before the square root.
REWARD_EPSILON = 1e-8


def reward_scale(stats: RunningStats) -> float:
    """sqrt(var + ε) of the discounted returns seen: the population variance, as SB3's VecNormalize and
    Gymnasium's NormalizeReward compute it; 1 before any return was seen."""
    if stats.count == 0:
        return 1.0
    return float(np.sqrt(stats.m2[0] / stats.count + REWARD_EPSILON))


class RewardNormalizer:
    """Reward normalization of one runner's sub-envs (config.normalizeRewards), as SB3's
    VecNormalize(norm_reward=True) and CleanRL's NormalizeReward wrapper do it: every step each sub-env's
    discounted return R ← γR + r joins the running statistics, the reward is divided by their std
    (mean not subtracted, so the reward's sign stays) and clipped; R restarts where an episode ended
    (terminated or truncated, as SB3 and CleanRL do).

    Gymnasium's wrapper cannot be used as it is: it replaces the env's rewards (the runner reports raw
    returns), and its statistics live inside one env, while these are shared by every runner. So the
    statistics are a RunningStats: the driver's merged copy arrives with the weights (`set_stats`), this
    runner adds its own steps to it as it samples (so the scale is up to date every step, as in the
    single-process libraries), and reports them as a delta that the driver merges, as the MeanStdFilter's."""

    def __init__(self, num_envs: int, gamma: float, clip: float) -> None:
        self.gamma = gamma
        self.clip = clip
        self.returns = np.zeros(num_envs, dtype=np.float64)
        self.stats = RunningStats(shape=(1,))
        self.delta = RunningStats(shape=(1,))

    def set_stats(self, state: dict[str, Any] | None) -> None:
        self.stats = RunningStats.from_state(state) if state is not None else RunningStats(shape=(1,))

    def __call__(self, reward: np.ndarray, done: np.ndarray) -> np.ndarray:
        """The scaled rewards of one vector step (`done`: its episodes that ended)."""
        self.returns = self.returns * self.gamma + reward
        step = RunningStats.from_batch(self.returns.reshape(-1, 1))
        self.stats.merge(step)
        self.delta.merge(step)
        scaled = np.clip(reward / reward_scale(self.stats), -self.clip, self.clip)
        self.returns[done] = 0.0
        return scaled

    def take_delta(self) -> RunningStats:
        """The statistics of the steps since the last call (for the driver to merge)."""
        delta, self.delta = self.delta, RunningStats(shape=(1,))
        return delta


# The observation filter's and the reward normalizer's statistics travel to the runners together, as
# one dict: the observation filter's state (or nothing) with the reward statistics under "reward".
def filters_state(obs: RunningStats | None, reward: RunningStats | None) -> dict[str, Any] | None:
    if obs is None and reward is None:
        return None
    state = obs.state() if obs is not None else {}
    if reward is not None:
        state["reward"] = reward.state()
    return state


def obs_filter_from(state: dict[str, Any] | None) -> RunningStats | None:
    return RunningStats.from_state(state) if state is not None and "mean" in state else None
