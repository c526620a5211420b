"""A small cooperative PettingZoo ParallelEnv for examples and tests (`kuberl.multi_agent.envs:coop_match`).

Every step all agents see the same cue c and their own id; agent i should answer (c + i) mod K (or, with
continuous actions, c·(−1)^i). Every agent receives the team reward: the mean of the agents' scores.
A shared policy must therefore read the agent id; random play scores 1/K per step (−2/3 continuous).
With `lateAgent: true` an extra agent joins at step 3 and leaves at step 7 without a terminal flag,
exercising agents that appear and disappear mid-episode.
"""

from __future__ import annotations

from typing import Any

import gymnasium as gym
import numpy as np
from pettingzoo import ParallelEnv


class CoopMatch(ParallelEnv[str, np.ndarray, Any]):
    metadata = {"name": "coop_match_v0", "render_modes": []}

    def __init__(self, config: dict[str, Any] | None = None) -> None:
        config = config or {}
        self.n = int(config.get("agents", 2))
        self.k = int(config.get("cues", 3))
        self.max_steps = int(config.get("max_steps", 10))
        self.continuous = bool(config.get("continuous", False))
        self.late = bool(config.get("late_agent", config.get("lateAgent", False)))
        self.regular = [f"agent_{i}" for i in range(self.n)]
        self.possible_agents = self.regular + (["late"] if self.late else [])
        self.index = {a: i for i, a in enumerate(self.possible_agents)}
        size = (1 if self.continuous else self.k) + len(self.possible_agents)
        self._obs_space = gym.spaces.Box(
            0.0 if not self.continuous else -1.0, 1.0, shape=(size,), dtype=np.float32
        )
        self._act_space: gym.Space[Any] = (
            gym.spaces.Box(-1.0, 1.0, shape=(1,), dtype=np.float32)
            if self.continuous
            else gym.spaces.Discrete(self.k)
        )
        self.rng = np.random.default_rng()
        self.agents: list[str] = []
        self.t = 0
        self.cue: float = 0.0

    def observation_space(self, agent: str) -> gym.Space[Any]:
        return self._obs_space

    def action_space(self, agent: str) -> gym.Space[Any]:
        return self._act_space

    def _observe(self, agents: list[str]) -> dict[str, np.ndarray]:
        out = {}
        for a in agents:
            o = np.zeros(self._obs_space.shape, dtype=np.float32)
            if self.continuous:
                o[0] = self.cue
                o[1 + self.index[a]] = 1.0
            else:
                o[int(self.cue)] = 1.0
                o[self.k + self.index[a]] = 1.0
            out[a] = o
        return out

    def _new_cue(self) -> None:
        self.cue = float(self.rng.uniform(-1, 1)) if self.continuous else float(self.rng.integers(self.k))

    def _target(self, agent: str) -> float:
        i = self.index[agent]
        if self.continuous:
            return self.cue * (1.0 if i % 2 == 0 else -1.0)
        return float((int(self.cue) + i) % self.k)

    def reset(
        self, seed: int | None = None, options: dict[str, Any] | None = None
    ) -> tuple[dict[str, np.ndarray], dict[str, dict[str, Any]]]:
        if seed is not None:
            self.rng = np.random.default_rng(seed)
        self.t = 0
        self.agents = list(self.regular)
        self._new_cue()
        return self._observe(self.agents), {a: {} for a in self.agents}

    def step(
        self, actions: dict[str, Any]
    ) -> tuple[
        dict[str, np.ndarray], dict[str, float], dict[str, bool], dict[str, bool], dict[str, dict[str, Any]]
    ]:
        scores = []
        for a in self.agents:
            act = actions[a]
            if self.continuous:
                scores.append(-abs(float(np.asarray(act).reshape(-1)[0]) - self._target(a)))
            else:
                scores.append(1.0 if int(act) == int(self._target(a)) else 0.0)
        team = float(np.mean(scores)) if scores else 0.0
        acting = list(self.agents)
        self.t += 1
        done = self.t >= self.max_steps
        if self.late and self.t == 3:
            self.agents.append("late")
        if self.late and self.t == 7 and "late" in self.agents:
            self.agents.remove("late")  # leaves without a terminated/truncated flag
        rewards = {a: team for a in acting}
        truncs = dict.fromkeys(acting, done)
        terms = dict.fromkeys(acting, False)
        if done:
            self.agents = []
        self._new_cue()
        # Agents that just ended or left get their last observation too (PettingZoo's convention).
        obs = self._observe(sorted(set(acting) | set(self.agents), key=self.index.__getitem__))
        return obs, rewards, terms, truncs, {a: {} for a in obs}


def coop_match(config: dict[str, Any]) -> CoopMatch:
    return CoopMatch(config)
