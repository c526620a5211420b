"""Agent → policy mapping: ordered glob/regex rules, a user function, or self-play seats.

Pure logic: the runner asks once per agent and episode and caches the answer, so a mapping may depend
on the episode (e.g. which seat the learner takes) but never changes within one.
"""

from __future__ import annotations

import fnmatch
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import gymnasium as gym
import numpy as np

from kuberl.core.env_factory import import_object


@dataclass(frozen=True)
class EpisodeInfo:
    """What a mapping function may look at: a runner-unique episode id and where it runs."""

    id: int
    env_index: int = 0
    worker_index: int = 0


@dataclass(frozen=True)
class SelfPlaySeats:
    """Each episode one seat, drawn uniformly, acts with `learning`; every other agent with `opponent`."""

    learning: str
    opponent: str
    latest_probability: float = 0.5
    random_probability: float = 0.0  # episodes whose opponents play uniformly random legal moves
    # False: opponents act with the opponent policy itself (e.g. a random one, when evaluating).
    use_pool: bool = True


class PolicyMapper:
    """Maps agent ids to policy names. Exactly one of rules, function, self_play, or a single policy."""

    def __init__(
        self,
        policies: Sequence[str],
        *,
        rules: Sequence[tuple[str, str]] = (),
        function: str | None = None,
        self_play: SelfPlaySeats | None = None,
    ) -> None:
        self.policies = list(policies)
        self.rules = [(_matcher(pattern), pid) for pattern, pid in rules]
        self.patterns = [pattern for pattern, _ in rules]
        self.function: Callable[[str, EpisodeInfo], Any] | None = (
            import_object(function) if function else None
        )
        self.self_play = self_play

    def __call__(self, agent: str, episode: EpisodeInfo, *, seat: str | None = None) -> str:
        """The policy of `agent` in `episode`; `seat` is the learner's seat under self-play."""
        if self.self_play is not None:
            return self.self_play.learning if agent == seat else self.self_play.opponent
        if self.function is not None:
            pid = str(self.function(agent, episode))
            if pid not in self.policies:
                raise ValueError(
                    f"policyMappingFunction returned {pid!r} for agent {agent!r}, which is not a policy "
                    f"(known: {', '.join(self.policies)})"
                )
            return pid
        for match, pid in self.rules:
            if match(agent):
                return pid
        if not self.rules and len(self.policies) == 1:
            return self.policies[0]
        raise ValueError(f"agent {agent!r} matches no policyMapping rule ({', '.join(self.patterns)})")


def _matcher(pattern: str) -> Callable[[str], bool]:
    if pattern.startswith("re:"):
        regex = re.compile(pattern[3:])
        return lambda agent: regex.fullmatch(agent) is not None
    return lambda agent: fnmatch.fnmatchcase(agent, pattern)


def policy_spaces(
    agent_spaces: Mapping[str, tuple[gym.Space[Any], gym.Space[Any]]],
    mapper: PolicyMapper,
    *,
    probe_episodes: int = 8,
) -> dict[str, tuple[gym.Space[Any], gym.Space[Any]]]:
    """Each policy's (observation, action) spaces, taken from the agents mapped to it.

    Agents sharing a policy must share spaces. A policy no possible agent maps to (under self-play, or a
    mapping function that picks it rarely) gets the agents' common spaces, if they have them."""
    found: dict[str, tuple[gym.Space[Any], gym.Space[Any]]] = {}
    owner: dict[str, str] = {}
    agents = list(agent_spaces)
    for ep in range(probe_episodes if mapper.function is not None else 1):
        info = EpisodeInfo(id=ep)
        for agent in agents:
            seat = agents[ep % len(agents)] if agents else None
            pid = mapper(agent, info, seat=seat)
            spaces = agent_spaces[agent]
            if pid in found and found[pid] != spaces:
                raise ValueError(
                    f"agents {owner[pid]!r} and {agent!r} both map to policy {pid!r} but have different "
                    f"spaces ({found[pid]} vs {spaces}); give them separate policies"
                )
            found.setdefault(pid, spaces)
            owner.setdefault(pid, agent)
    common = list({str(s): s for s in agent_spaces.values()}.values())
    for pid in mapper.policies:
        if pid not in found:
            if len(common) != 1:
                raise ValueError(
                    f"policy {pid!r} is used by no agent and the agents' spaces differ, so its spaces are unknown"
                )
            found[pid] = common[0]
    return found


def seat_for(agents: Sequence[str], rng: np.random.Generator) -> str:
    return str(agents[int(rng.integers(len(agents)))])
