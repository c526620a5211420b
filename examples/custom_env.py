"""Train PPO on your own Gymnasium environment through the Python API.

    python -m examples.custom_env      # from the repository root

The env is named by import path (`examples.custom_env:make_env`) and built inside each env runner from
`envConfig`, so it never has to be pickled or deep-copied.
"""

from __future__ import annotations

from typing import Any

import gymnasium as gym
import numpy as np


class Corridor(gym.Env[np.ndarray, np.int64]):
    """Walk right to the end of a corridor of `length` cells; each step costs a little."""

    def __init__(self, length: int = 10) -> None:
        self.length = length
        self.observation_space = gym.spaces.Box(0.0, 1.0, shape=(1,), dtype=np.float32)
        self.action_space = gym.spaces.Discrete(2)
        self.pos = 0

    def reset(
        self, *, seed: int | None = None, options: dict[str, Any] | None = None
    ) -> tuple[np.ndarray, dict[str, Any]]:
        super().reset(seed=seed)
        self.pos = 0
        return np.array([0.0], dtype=np.float32), {}

    def step(self, action: np.int64) -> tuple[np.ndarray, float, bool, bool, dict[str, Any]]:
        self.pos = max(0, self.pos + (1 if int(action) == 1 else -1))
        done = self.pos >= self.length
        return np.array([self.pos / self.length], dtype=np.float32), 1.0 if done else -0.01, done, False, {}


def make_env(config: dict[str, Any]) -> gym.Env[np.ndarray, np.int64]:
    return gym.wrappers.TimeLimit(Corridor(int(config.get("length", 10))), max_episode_steps=100)


if __name__ == "__main__":
    from kuberl import build_algorithm

    algo = build_algorithm(
        {
            "apiVersion": "kuberl.io/v1alpha1",
            "kind": "RLTrainingJob",
            "metadata": {"name": "corridor"},
            "spec": {
                "algorithm": "PPO",
                "env": "examples.custom_env:make_env",
                "envConfig": {"length": 10},
                "config": {"train_batch_size": 2048, "lr": 0.001},
                "resources": {"envRunners": 0},
            },
        }
    )
    try:
        for _ in range(10):
            result = algo.train()
            print(f"iter {result['training_iteration']:>2}  return {result['episode_return_mean']:.2f}")
        print("greedy evaluation:", algo.evaluate(5))
        print("checkpoint:", algo.save())
    finally:
        algo.stop()
