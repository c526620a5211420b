"""Small environments for tests, created by import path (`tests.envs:make_…`) inside runners."""

from __future__ import annotations

import os
import time
import uuid
from pathlib import Path
from typing import Any

import gymnasium as gym
import numpy as np

# The memory task moved into the package (`kuberl.envs:make_recall`); kept here under its old names so
# `tests.envs:make_recall` in older job files still resolves.
from kuberl.envs import RecallEnv, make_recall  # noqa: F401


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


class BrightSide(gym.Env[np.ndarray, np.int64]):
    """A small image task: a bright block sits in the left or right half; the action must name the side.

    Random play earns half the reward; an agent must read the pixels to do better.
    """

    def __init__(self, config: dict[str, Any] | None = None) -> None:
        self.size = int((config or {}).get("size", 12))
        self.observation_space = gym.spaces.Box(0, 255, shape=(self.size, self.size, 1), dtype=np.uint8)
        self.action_space = gym.spaces.Discrete(2)
        self.side = 0
        self.t = 0

    def _obs(self) -> np.ndarray:
        img = np.zeros((self.size, self.size, 1), dtype=np.uint8)
        row = int(self.np_random.integers(0, self.size - 2))
        half = self.size // 2
        col = int(self.np_random.integers(0, half - 2)) + (half if self.side else 0)
        img[row : row + 2, col : col + 2] = 255
        return img

    def reset(
        self, *, seed: int | None = None, options: dict[str, Any] | None = None
    ) -> tuple[np.ndarray, dict[str, Any]]:
        super().reset(seed=seed)
        self.t = 0
        self.side = int(self.np_random.integers(0, 2))
        return self._obs(), {}

    def step(self, action: np.int64) -> tuple[np.ndarray, float, bool, bool, dict[str, Any]]:
        reward = 1.0 if int(action) == self.side else 0.0
        self.t += 1
        self.side = int(self.np_random.integers(0, 2))
        return self._obs(), reward, False, self.t >= 8, {}


class MatchTarget(gym.Env[dict[str, Any], np.int64]):
    """Dict observations: choose the action equal to obs["target"] (a Discrete) while obs["noise"] (a Box)
    carries nothing. Random play earns a third of the reward."""

    def __init__(self, config: dict[str, Any] | None = None) -> None:
        self.observation_space = gym.spaces.Dict(
            {"noise": gym.spaces.Box(-1, 1, shape=(2,), dtype=np.float32), "target": gym.spaces.Discrete(3)}
        )
        self.action_space = gym.spaces.Discrete(3)
        self.target = 0
        self.t = 0

    def _obs(self) -> dict[str, Any]:
        self.target = int(self.np_random.integers(0, 3))
        noise = self.np_random.uniform(-1, 1, size=2).astype(np.float32)
        return {"noise": noise, "target": self.target}

    def reset(
        self, *, seed: int | None = None, options: dict[str, Any] | None = None
    ) -> tuple[dict[str, Any], dict[str, Any]]:
        super().reset(seed=seed)
        self.t = 0
        return self._obs(), {}

    def step(self, action: np.int64) -> tuple[dict[str, Any], float, bool, bool, dict[str, Any]]:
        reward = 1.0 if int(action) == self.target else 0.0
        self.t += 1
        return self._obs(), reward, False, self.t >= 6, {}


def make_bright_side(config: dict[str, Any]) -> BrightSide:
    return BrightSide(config)


def make_match_target(config: dict[str, Any]) -> MatchTarget:
    return MatchTarget(config)


class GatedCartPole(gym.Wrapper[np.ndarray, np.int64, np.ndarray, np.int64]):
    """CartPole whose reset() waits until the file `gate` exists (tests/integration/test_parallel_evaluation:
    an evaluation that cannot finish before the test lets it)."""

    def __init__(self, gate: str) -> None:
        super().__init__(gym.make("CartPole-v1"))
        self.gate = Path(gate)

    def reset(self, **kwargs: Any) -> tuple[np.ndarray, dict[str, Any]]:
        while not self.gate.exists():
            time.sleep(0.01)
        return self.env.reset(**kwargs)


def make_gated_cartpole(config: dict[str, Any]) -> gym.Env[np.ndarray, np.int64]:
    """CartPole-v1; with config["gate"], a GatedCartPole (the training envs get no gate)."""
    return GatedCartPole(config["gate"]) if config.get("gate") else gym.make("CartPole-v1")


class EvaluationMarkers(gym.Wrapper[np.ndarray, np.int64, np.ndarray, np.int64]):
    """CartPole that leaves files in `markers` (tests/integration/test_evaluation_runners): with
    role "eval" (set by evaluation.envConfig) `open-PID-ID` at its first reset and `closed-PID-ID` when
    closed, so a test sees which processes evaluated; the training envs (no role) wait at each reset
    while an evaluation is under way (more opened than closed, at most 120 s), so an evaluation started
    in parallel is finished before the iterations after it end: its result cannot miss the run."""

    def __init__(self, markers: str, role: str | None) -> None:
        super().__init__(gym.make("CartPole-v1"))
        self.markers = Path(markers)
        self.role = role
        self.id = f"{os.getpid()}-{uuid.uuid4().hex[:8]}"
        self.opened = False

    def reset(self, **kwargs: Any) -> tuple[np.ndarray, dict[str, Any]]:
        if self.role == "eval" and not self.opened:
            self.opened = True
            (self.markers / f"open-{self.id}").touch()
        elif self.role is None:
            deadline = time.monotonic() + 120
            while time.monotonic() < deadline and len(list(self.markers.glob("open-*"))) > len(
                list(self.markers.glob("closed-*"))
            ):
                time.sleep(0.01)
        return self.env.reset(**kwargs)

    def close(self) -> None:
        if self.opened:
            (self.markers / f"closed-{self.id}").touch()
        super().close()


def make_marked_cartpole(config: dict[str, Any]) -> gym.Env[np.ndarray, np.int64]:
    return EvaluationMarkers(config["markers"], config.get("role"))
