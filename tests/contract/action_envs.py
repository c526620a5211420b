"""Tiny single-agent envs, one per Gymnasium action-space kind beyond Discrete and Box, for the
capability contract (tests/contract/test_capability_contract.py): each rewards matching a cue, so any
algorithm that can act in the space can take a step in it. Referenced by users' spelling
(`env: tests.contract.action_envs:multi_discrete`), so `kuberl run` imports them as it would a user's."""

from __future__ import annotations

from typing import Any

import gymnasium as gym
import numpy as np


class CueEnv(gym.Env[np.ndarray, Any]):
    """Four-step episodes: a 2-d cue in, one action of `action_space` out, reward 1 when it matches."""

    def __init__(self, action_space: gym.Space[Any]) -> None:
        self.observation_space = gym.spaces.Box(0.0, 1.0, (2,), np.float32)
        self.action_space = action_space
        self.cue = np.zeros(2, np.float32)
        self.t = 0

    def _new_cue(self) -> np.ndarray:
        self.cue = self.np_random.integers(0, 2, 2).astype(np.float32)
        return self.cue.copy()

    def reset(
        self, *, seed: int | None = None, options: dict[str, Any] | None = None
    ) -> tuple[np.ndarray, dict[str, Any]]:
        super().reset(seed=seed)
        self.t = 0
        return self._new_cue(), {}

    def step(self, action: Any) -> tuple[np.ndarray, float, bool, bool, dict[str, Any]]:
        # As strict as a real env: an algorithm that does not act in this space must fail here, not
        # pass because the reward could be computed from whatever it sent.
        if not self.action_space.contains(action):
            raise ValueError(f"{action!r} is not in {self.action_space}")
        flat = np.concatenate([np.ravel(np.asarray(a, np.float32)) for a in _leaves(action)])
        reward = float(np.mean(np.round(flat[:2]) == self.cue[: min(2, flat.size)]))
        self.t += 1
        return self._new_cue(), reward, False, self.t >= 4, {}


def _leaves(action: Any) -> list[Any]:
    if isinstance(action, dict):
        return [x for k in sorted(action) for x in _leaves(action[k])]
    if isinstance(action, tuple):
        return [x for a in action for x in _leaves(a)]
    return [action]


def multi_discrete(config: dict[str, Any]) -> CueEnv:
    return CueEnv(gym.spaces.MultiDiscrete([2, 2]))


def multi_binary(config: dict[str, Any]) -> CueEnv:
    return CueEnv(gym.spaces.MultiBinary(2))


def tuple_space(config: dict[str, Any]) -> CueEnv:
    return CueEnv(gym.spaces.Tuple((gym.spaces.Discrete(2), gym.spaces.Discrete(2))))


def dict_space(config: dict[str, Any]) -> CueEnv:
    return CueEnv(gym.spaces.Dict({"a": gym.spaces.Discrete(2), "b": gym.spaces.Box(0.0, 1.0, (1,))}))
