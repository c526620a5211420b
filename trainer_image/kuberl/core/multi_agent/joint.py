"""A cooperative PettingZoo ParallelEnv seen as one joint env, for the value-factorization learners
(QMIX, VDN) that act for every agent at once.

Each step every agent acts; the step returns all agents' observations stacked [agents, obs_dim], the
global state, the team reward (the sum of the agents' rewards, as multi-agent results count returns)
and whether the episode ended. The global state is the env's `state()` when it implements it, else the
agents' observations concatenated. The episode ends when any agent is done (terminated counts over
truncated); agents that leave early are not supported (a joint learner needs every agent's action).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import gymnasium as gym
import numpy as np

from kuberl.core.env_factory import EnvError
from kuberl.core.multi_agent.env import ParallelAdapter, make_agent_env


@dataclass
class JointStep:
    obs: np.ndarray  # [agents, obs_dim] float32
    state: np.ndarray  # [state_dim] float32
    reward: float
    terminated: bool
    truncated: bool


def make_parallel_env(env: str, env_config: Mapping[str, Any]) -> Any:
    """The raw PettingZoo ParallelEnv `env` names (EnvError, saying why, for anything else)."""
    try:
        wrapped = make_agent_env(env, env_config)
    except EnvError as exc:
        raise EnvError(f"a cooperative PettingZoo ParallelEnv is required: {exc}") from None
    if not isinstance(wrapped, ParallelAdapter):
        wrapped.close()
        raise EnvError(
            f"{env!r} is a turn-based (AEC) PettingZoo env; QMIX and VDN need a ParallelEnv where every "
            "agent acts each step"
        )
    return wrapped.env


class JointEnv:
    """One ParallelEnv with a fixed set of agents (`possible_agents`), all alike: the same observation
    space and the same Discrete action space (the agent network is shared)."""

    def __init__(self, env: str, env_config: Mapping[str, Any]) -> None:
        self.env = make_parallel_env(env, env_config)
        self.agents: list[str] = list(self.env.possible_agents)
        self.obs_space, self.action_space = check_agents(env, self.env)
        self.n_agents = len(self.agents)
        self.obs_dim = gym.spaces.flatdim(self.obs_space)
        self.has_state = _has_state(self.env)
        self.state_dim = int(np.prod(self.env.state().shape)) if self.has_state else 0
        if not self.has_state:
            self.state_dim = self.n_agents * self.obs_dim

    def _joint(self, obs: Mapping[str, Any]) -> tuple[np.ndarray, np.ndarray]:
        missing = [a for a in self.agents if a not in obs]
        if missing:
            raise EnvError(
                f"agents {missing} sent no observation: QMIX and VDN need every agent until the episode ends"
            )
        stacked = np.stack(
            [np.asarray(gym.spaces.flatten(self.obs_space, obs[a]), np.float32) for a in self.agents]
        )
        state = (
            np.asarray(self.env.state(), dtype=np.float32).reshape(-1)
            if self.has_state
            else stacked.reshape(-1)
        )
        return stacked, state

    def reset(self, seed: int | None = None) -> tuple[np.ndarray, np.ndarray]:
        obs, _ = self.env.reset(seed=seed)
        return self._joint(obs)

    def step(self, actions: np.ndarray) -> JointStep:
        obs, rewards, terms, truncs, _ = self.env.step(
            {a: int(act) for a, act in zip(self.agents, actions, strict=True)}
        )
        terminated = any(bool(terms.get(a, False)) for a in self.agents)
        truncated = not terminated and any(bool(truncs.get(a, False)) for a in self.agents)
        stacked, state = self._joint(obs)
        return JointStep(stacked, state, float(sum(rewards.values())), terminated, truncated)

    def close(self) -> None:
        self.env.close()


def _has_state(env: Any) -> bool:
    """Whether the env implements PettingZoo's `state()` (ParallelEnv's default raises)."""
    try:
        env.reset(seed=0)
        env.state()
    except NotImplementedError:
        return False
    return True


def check_agents(name: str, env: Any) -> tuple[gym.Space[Any], gym.Space[Any]]:
    """(observation, action) space every agent shares; EnvError naming the difference otherwise."""
    agents = list(env.possible_agents)
    if len(agents) < 2:
        raise EnvError(
            f"{name!r} has {len(agents)} agent(s); QMIX and VDN factorise a team's value over two or more "
            "agents (train a single agent with DQN)"
        )
    obs_space, action_space = env.observation_space(agents[0]), env.action_space(agents[0])
    for a in agents[1:]:
        if env.observation_space(a) != obs_space or env.action_space(a) != action_space:
            raise EnvError(
                f"{name!r}: agents {agents[0]!r} and {a!r} have different spaces; QMIX and VDN share one "
                "agent network, so every agent needs the same observation and action space"
            )
    return obs_space, action_space


def probe_joint(env: str, env_config: Mapping[str, Any]) -> list[tuple[gym.Space[Any], gym.Space[Any]]]:
    """Every agent's (observation, action) space, from one throwaway instance; EnvError when `env` is not
    a cooperative ParallelEnv a joint learner can train."""
    instance = make_parallel_env(env, env_config)
    try:
        spaces = check_agents(env, instance)
        return [spaces for _ in instance.possible_agents]
    finally:
        instance.close()
