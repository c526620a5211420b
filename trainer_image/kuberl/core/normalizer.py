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
