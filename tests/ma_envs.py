"""Scripted PettingZoo envs for the multi-agent runner tests (`tests.ma_envs:make_relay`)."""

from __future__ import annotations

from typing import Any

import gymnasium as gym
import numpy as np
from pettingzoo import ParallelEnv


class Relay(ParallelEnv[str, np.ndarray, int]):
    """A scripted relay: `a` acts at env steps 0-3 and terminates at its 4th step; `b` joins after step 2
    (first acts at step 2) and is truncated by the time limit after step 5 (its 4th step), which ends the
    episode. `a` earns 1 per step, `b` 10. Observations are [t, is_a, is_b]."""

    metadata = {"name": "relay_v0"}

    def __init__(self, config: dict[str, Any] | None = None) -> None:
        self.possible_agents = ["a", "b"]
        self.agents: list[str] = []
        self.t = 0
        self._obs_space = gym.spaces.Box(0.0, 10.0, shape=(3,), dtype=np.float32)
        self._act_space = gym.spaces.Discrete(2)

    def observation_space(self, agent: str) -> gym.Space[Any]:
        return self._obs_space

    def action_space(self, agent: str) -> gym.Space[Any]:
        return self._act_space

    def _obs(self, agent: str) -> np.ndarray:
        return np.array([self.t, agent == "a", agent == "b"], dtype=np.float32)

    def reset(
        self, seed: int | None = None, options: dict[str, Any] | None = None
    ) -> tuple[dict[str, np.ndarray], dict[str, dict[str, Any]]]:
        self.t = 0
        self.agents = ["a"]
        return {"a": self._obs("a")}, {"a": {}}

    def step(self, actions: dict[str, int]) -> tuple[Any, Any, Any, Any, Any]:
        assert set(actions) == set(self.agents), (actions, self.agents)
        acting = list(self.agents)
        self.t += 1
        rewards = {a: 1.0 if a == "a" else 10.0 for a in acting}
        terms = {a: a == "a" and self.t == 4 for a in acting}
        truncs = {a: a == "b" and self.t == 6 for a in acting}
        self.agents = [a for a in acting if not (terms[a] or truncs[a])]
        if self.t == 2:
            self.agents.append("b")
        obs = {a: self._obs(a) for a in set(acting) | set(self.agents)}
        return obs, rewards, terms, truncs, {a: {} for a in obs}


def make_relay(config: dict[str, Any]) -> Relay:
    return Relay(config)


def not_a_pettingzoo_env(config: dict[str, Any]) -> gym.Env[Any, Any]:
    return gym.make("CartPole-v1")


def by_parity(agent_id: str, episode: Any) -> str:
    """A mapping function: even episodes put agent_0 on `left`, odd ones swap."""
    first = agent_id == "agent_0"
    return "left" if first == (episode.id % 2 == 0) else "right"


class TeamButtons(ParallelEnv[str, np.ndarray, Any]):
    """Two agents each set their own dials (kuberl.envs ButtonsEnv, one per agent, same envConfig: a
    MultiDiscrete, MultiBinary, Dict or Tuple action space). The env checks every action is in its
    agent's space. Episodes end after `steps` steps; the best env return is 2 × steps."""

    metadata = {"name": "team_buttons_v0"}

    def __init__(self, config: dict[str, Any] | None = None) -> None:
        from kuberl.envs import ButtonsEnv

        self.possible_agents = ["agent_0", "agent_1"]
        self.agents: list[str] = []
        self.envs = {a: ButtonsEnv(config) for a in self.possible_agents}

    def observation_space(self, agent: str) -> gym.Space[Any]:
        return self.envs[agent].observation_space

    def action_space(self, agent: str) -> gym.Space[Any]:
        return self.envs[agent].action_space

    def reset(
        self, seed: int | None = None, options: dict[str, Any] | None = None
    ) -> tuple[dict[str, np.ndarray], dict[str, dict[str, Any]]]:
        self.agents = list(self.possible_agents)
        obs = {
            a: env.reset(seed=None if seed is None else seed + i)[0]
            for i, (a, env) in enumerate(self.envs.items())
        }
        return obs, {a: {} for a in obs}

    def step(self, actions: dict[str, Any]) -> tuple[Any, Any, Any, Any, Any]:
        out = {a: self.envs[a].step(actions[a]) for a in self.agents}
        obs = {a: o[0] for a, o in out.items()}
        rewards = {a: o[1] for a, o in out.items()}
        terms = {a: False for a in out}
        truncs = {a: o[3] for a, o in out.items()}
        self.agents = [a for a in self.agents if not truncs[a]]
        return obs, rewards, terms, truncs, {a: {} for a in obs}


def make_team_buttons(config: dict[str, Any]) -> TeamButtons:
    return TeamButtons(config)
