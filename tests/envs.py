"""Small environments for tests, created by import path (`tests.envs:make_…`) inside runners."""

from __future__ import annotations

from typing import Any

import gymnasium as gym
import numpy as np


class ChainEnv(gym.Env[np.ndarray, np.int64]):
    """Walk right along a chain to the goal (+1); a time limit truncates. Solvable in a few thousand steps."""

    def __init__(self, config: dict[str, Any] | None = None) -> None:
        config = config or {}
        self.length = int(config.get("length", 5))
        self.max_steps = int(config.get("max_steps", 20))
        self.crash_every = int(config.get("crash_every", 0))
        self.observation_space = gym.spaces.Box(0.0, 1.0, shape=(self.length,), dtype=np.float32)
        self.action_space = gym.spaces.Discrete(2)
        self.pos = 0
        self.t = 0
        self.total_steps = 0

    def _obs(self) -> np.ndarray:
        o = np.zeros(self.length, dtype=np.float32)
        o[self.pos] = 1.0
        return o

    def reset(
        self, *, seed: int | None = None, options: dict[str, Any] | None = None
    ) -> tuple[np.ndarray, dict[str, Any]]:
        super().reset(seed=seed)
        self.pos, self.t = 0, 0
        return self._obs(), {}

    def step(self, action: np.int64) -> tuple[np.ndarray, float, bool, bool, dict[str, Any]]:
        self.total_steps += 1
        if self.crash_every and self.total_steps % self.crash_every == 0:
            raise RuntimeError("simulated simulator crash")
        self.t += 1
        self.pos = min(self.pos + 1, self.length - 1) if int(action) == 1 else max(self.pos - 1, 0)
        terminated = self.pos == self.length - 1
        return self._obs(), 1.0 if terminated else -0.01, terminated, self.t >= self.max_steps, {}


def make_chain(config: dict[str, Any]) -> ChainEnv:
    return ChainEnv(config)
