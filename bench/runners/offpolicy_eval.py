"""Shared by the off-policy benchmark children: the threshold test both frameworks are held to.

Every `every` env steps, 10 episodes of the deterministic policy on a separate vector env, one episode per
sub-env (the same criterion as tests/learning/test_{sac,td3,dqn}_learning.py). The time spent evaluating is
measured and reported apart, so it can be subtracted from the training time of either framework.
"""

from __future__ import annotations

import time
from collections.abc import Callable

import gymnasium as gym
import numpy as np


class Evaluator:
    def __init__(self, env_id: str, *, seed: int, episodes: int = 10) -> None:
        self.env = gym.make_vec(env_id, num_envs=episodes, vectorization_mode="sync")
        self.seed = seed
        self.episodes = episodes
        self.seconds = 0.0
        self.history: list[tuple[int, float]] = []

    def __call__(self, steps: int, act: Callable[[np.ndarray], np.ndarray]) -> float:
        t0 = time.perf_counter()
        obs, _ = self.env.reset(seed=self.seed + 1_000_003)
        total = np.zeros(self.episodes)
        done = np.zeros(self.episodes, dtype=bool)
        # Each sub-env plays one episode; steps after a sub-env's end (autoreset) are masked out.
        while not done.all():
            obs, rew, term, trunc, _ = self.env.step(act(obs))
            total += np.where(done, 0.0, rew)
            done |= term | trunc
        ret = float(total.mean())
        self.history.append((steps, ret))
        self.seconds += time.perf_counter() - t0
        return ret
