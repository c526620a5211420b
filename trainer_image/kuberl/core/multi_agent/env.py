"""PettingZoo environments behind one small interface the multi-agent runner steps.

Both PettingZoo APIs are supported:

- **Parallel** envs are stepped as they are: every live agent observes and acts each step; agents may
  join (they appear in `agents`) or leave (terminated, truncated, or just gone) mid-episode.
- **AEC** (turn-based) envs are stepped turn by turn, as PettingZoo's `agent_iter()` loop does, rather
  than through `aec_to_parallel` (which only accepts envs whose agents all act every cycle, so not board
  games). A step plays the acting agent's move, then walks over the agents that are already done
  (stepping them with `None`, as the AEC API requires) until the next agent that must act. Only that
  agent's observation comes back; rewards arrive through `last()`, i.e. an agent's reward accumulated
  since its own previous move.

`env` is a PettingZoo registry id (`classic/tictactoe-v3`, made with envConfig as keyword arguments;
the parallel version when the registry has one), or `package.module:attr`: a module holding
`parallel_env`/`env` (e.g. `pettingzoo.butterfly:pistonball_v6`, called with envConfig as keyword
arguments), or a factory called as `factory(envConfig)` returning a ParallelEnv or AECEnv (the kuberl
convention for custom envs).
"""

from __future__ import annotations

import types
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol

import gymnasium as gym

from kuberl.core.env_factory import EnvError, import_object


@dataclass
class AgentStep:
    """What one env step tells the runner. `obs` holds only the agents that must act next."""

    obs: dict[str, Any]
    rewards: dict[str, float]
    terminated: set[str] = field(default_factory=set)
    truncated: set[str] = field(default_factory=set)
    # The last observation of agents that ended this step (bootstraps a truncated agent's value).
    final_obs: dict[str, Any] = field(default_factory=dict)
    done: bool = False  # the episode is over for every agent


class AgentEnv(Protocol):
    possible_agents: list[str]

    def observation_space(self, agent: str) -> gym.Space[Any]: ...
    def action_space(self, agent: str) -> gym.Space[Any]: ...
    def reset(self, seed: int | None = None) -> dict[str, Any]: ...
    def step(self, actions: Mapping[str, Any]) -> AgentStep: ...
    def close(self) -> None: ...


class _PettingZooAdapter:
    """What both PettingZoo APIs share: the agents, their spaces and close(); they differ in stepping."""

    def __init__(self, env: Any) -> None:
        self.env = env
        self.possible_agents = list(env.possible_agents)

    def observation_space(self, agent: str) -> gym.Space[Any]:
        space: gym.Space[Any] = self.env.observation_space(agent)
        return space

    def action_space(self, agent: str) -> gym.Space[Any]:
        space: gym.Space[Any] = self.env.action_space(agent)
        return space

    def close(self) -> None:
        self.env.close()


class ParallelAdapter(_PettingZooAdapter):
    """A PettingZoo ParallelEnv. An agent that leaves without a terminated/truncated flag counts as truncated."""

    def __init__(self, env: Any) -> None:
        super().__init__(env)
        self._live: set[str] = set()

    def reset(self, seed: int | None = None) -> dict[str, Any]:
        obs, _ = self.env.reset(seed=seed)
        self._live = set(self.env.agents)
        return {a: o for a, o in obs.items() if a in self._live}

    def step(self, actions: Mapping[str, Any]) -> AgentStep:
        obs, rewards, terms, truncs, _ = self.env.step(dict(actions))
        live = set(self.env.agents)
        terminated = {a for a, t in terms.items() if t}
        truncated = {a for a, t in truncs.items() if t and a not in terminated}
        gone = self._live - live - terminated - truncated
        truncated |= gone
        ended = terminated | truncated
        self._live = live - ended
        return AgentStep(
            obs={a: o for a, o in obs.items() if a in self._live},
            rewards={a: float(r) for a, r in rewards.items()},
            terminated=terminated,
            truncated=truncated,
            final_obs={a: obs[a] for a in ended if a in obs},
            done=not self._live,
        )


class AECAdapter(_PettingZooAdapter):
    """A PettingZoo AECEnv stepped turn by turn (see the module docs)."""

    def reset(self, seed: int | None = None) -> dict[str, Any]:
        self.env.reset(seed=seed)
        return self._advance(AgentStep(obs={}, rewards={})).obs

    def step(self, actions: Mapping[str, Any]) -> AgentStep:
        self.env.step(actions[self.env.agent_selection])
        return self._advance(AgentStep(obs={}, rewards={}))

    def _advance(self, out: AgentStep) -> AgentStep:
        """Collect rewards and ends until the next agent that must act (or the end of the episode)."""
        env = self.env
        while env.agents:
            agent = env.agent_selection
            obs, reward, term, trunc, _ = env.last()
            out.rewards[agent] = out.rewards.get(agent, 0.0) + float(reward)
            if not (term or trunc):
                out.obs = {agent: obs}
                return out
            (out.terminated if term else out.truncated).add(agent)
            out.final_obs[agent] = obs
            env.step(None)
        out.done = True
        return out


def make_agent_env(env: str, env_config: Mapping[str, Any]) -> AgentEnv:
    """Build the env named `env` inside the calling process and wrap it for the runner."""
    config = dict(env_config)
    if ":" not in env:
        return wrap(_from_registry(env, config), name=env)
    target = import_object(env)
    try:
        if isinstance(target, types.ModuleType):
            maker = getattr(target, "parallel_env", None) or getattr(target, "env", None)
            if maker is None:
                raise EnvError(f"module {env!r} has neither parallel_env() nor env()")
            instance = maker(**config)
        elif callable(target):
            instance = target(config)
        else:
            raise EnvError(f"{env!r} is neither a PettingZoo env module nor a factory")
    except EnvError:
        raise
    except Exception as exc:
        raise EnvError(f"creating {env!r} failed: {type(exc).__name__}: {exc}") from None
    return wrap(instance, name=env)


def _from_registry(env: str, config: dict[str, Any]) -> Any:
    """A PettingZoo registry id (`classic/tictactoe-v3`): its parallel version when it has one, else AEC."""
    import pettingzoo
    from pettingzoo.env_registry.exceptions import FailedToImport, PettingZooRegistryError

    for kind in ("parallel", "aec"):
        try:
            spec = pettingzoo.spec(kind, env)
        except PettingZooRegistryError:
            continue
        try:
            return pettingzoo.make(kind, spec, **config)
        except FailedToImport as exc:
            raise EnvError(str(exc)) from None
        except Exception as exc:
            raise EnvError(f"creating {env!r} failed: {type(exc).__name__}: {exc}") from None
    raise EnvError(
        f"{env!r} is not in PettingZoo's registry (ids look like classic/tictactoe-v3; "
        "pettingzoo.pprint_registry() lists them) nor an import path `module:attr`"
    )


def wrap(instance: Any, *, name: str = "env") -> AgentEnv:
    from pettingzoo import AECEnv, ParallelEnv

    if isinstance(instance, ParallelEnv):
        return ParallelAdapter(instance)
    if isinstance(instance, AECEnv):
        return AECAdapter(instance)
    raise EnvError(
        f"{name!r} built a {type(instance).__name__}, not a PettingZoo ParallelEnv or AECEnv "
        "(single-agent Gymnasium envs do not need multiAgent)"
    )


def probe_spaces(env: str, env_config: Mapping[str, Any]) -> dict[str, tuple[gym.Space[Any], gym.Space[Any]]]:
    """(observation, action) space of every possible agent, from one throwaway instance."""
    instance = make_agent_env(env, env_config)
    try:
        return {
            a: (instance.observation_space(a), instance.action_space(a)) for a in instance.possible_agents
        }
    finally:
        instance.close()
