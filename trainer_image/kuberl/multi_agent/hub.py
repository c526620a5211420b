"""The experience hub between the multi-agent runners and the per-policy single-agent algorithms.

Every trained policy is learned by an unmodified single-agent Algorithm whose runner group is a
`FeedRunnerGroup`: its `sample()` asks the hub for that policy's experience, and its `sync()` hands the
policy's new weights to the hub. The hub samples the multi-agent runners until the asking policy has
as many agent steps as its algorithm wants per iteration (what its own runners would have produced),
keeps the other policies' experience for when they ask, and pushes changed weights to the runners
before it samples again, so on-policy algorithms always train on experience from their current weights.
"""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import gymnasium as gym
import numpy as np

from kuberl.core.callbacks import EpisodeMetrics
from kuberl.core.env_runner import Rollout, RunnerConfig
from kuberl.core.multi_agent.group import MultiAgentRunnerGroup
from kuberl.core.multi_agent.runner import AgentEpisode, MultiAgentSample
from kuberl.core.sample_batch import SampleBatch
from kuberl.results import TrainResult

if TYPE_CHECKING:
    from kuberl.algorithms.base import Algorithm

MAX_FRAGMENT = 10_000  # env steps per env copy in one sample call
MAX_ROUNDS = 1_000  # sample calls for one policy before concluding it never acts


@dataclass
class HubStats:
    """Env-level experience since the last `drain()`."""

    env_steps: int = 0
    episode_returns: list[float] = field(default_factory=list)
    episode_lengths: list[int] = field(default_factory=list)
    policy_episodes: dict[str, list[tuple[float, int]]] = field(default_factory=lambda: defaultdict(list))
    agent_steps: dict[str, int] = field(default_factory=lambda: defaultdict(int))
    outcomes: list[int] = field(default_factory=list)
    episode_metrics: EpisodeMetrics = field(default_factory=EpisodeMetrics)


def merge_rollouts(rollouts: list[Rollout]) -> Rollout:
    """Lanes [T_k, 1] of one policy → one lane (every lane ends in a terminated/truncated step). Always a
    copy: arrays from Ray's object store are read-only, which torch warns about when wrapping them."""
    keys = rollouts[0].batch.keys()
    batch = SampleBatch({k: np.concatenate([r.batch[k] for r in rollouts], axis=0) for k in keys})
    return Rollout(
        batch=batch,
        episode_returns=[x for r in rollouts for x in r.episode_returns],
        episode_lengths=[x for r in rollouts for x in r.episode_lengths],
    )


class ExperienceHub:
    def __init__(self) -> None:
        self.group: MultiAgentRunnerGroup | None = None
        self.weights: dict[str, dict[str, np.ndarray]] = {}
        self.options: dict[str, dict[str, Any]] = {}
        self.pool: list[dict[str, np.ndarray]] | None = None
        self.dirty = True
        self.wanted: dict[str, int] = {}
        self.buffers: dict[str, list[Rollout]] = defaultdict(list)
        self.buffered: dict[str, int] = defaultdict(int)
        # Agent steps of a policy per env step and env copy, learned from what came back (1 until seen).
        self.rate: dict[str, float] = {}
        self.stats = HubStats()
        # spec.output: receives every finished agent episode with its runner's index.
        self.recorder: Callable[[list[AgentEpisode], int], None] | None = None

    # -- weights ---------------------------------------------------------------------------------
    def update_policy(self, pid: str, weights: dict[str, np.ndarray], options: dict[str, Any] | None) -> None:
        self.weights[pid] = weights
        if options:
            self.options[pid] = options
        self.dirty = True

    def set_pool(self, pool: list[dict[str, np.ndarray]]) -> None:
        self.pool = pool
        self.dirty = True

    def push(self) -> None:
        if self.dirty and self.group is not None:
            self.group.sync({"weights": dict(self.weights), "options": dict(self.options), "pool": self.pool})
            self.dirty = False

    # -- experience ------------------------------------------------------------------------------
    def collect(self, pid: str) -> list[Rollout]:
        """All of `pid`'s buffered experience, once it holds at least `wanted[pid]` agent steps."""
        rounds = 0
        while self.buffered[pid] < self.wanted[pid]:
            if rounds == MAX_ROUNDS:
                raise RuntimeError(
                    f"policy {pid!r} got {self.buffered[pid]} agent steps in {rounds} sample calls; "
                    "is any agent mapped to it?"
                )
            self.sample_round(pid)
            rounds += 1
        rollouts = self.buffers.pop(pid, [])
        self.buffered[pid] = 0
        return [merge_rollouts(rollouts)] if rollouts else []

    def sample_round(self, pid: str) -> None:
        assert self.group is not None, "the hub has no runners yet"
        self.push()
        deficit = self.wanted[pid] - self.buffered[pid]
        per_step = self.rate.get(pid, 1.0) * self.group.num_envs
        steps = min(max(1, math.ceil(deficit / per_step)), MAX_FRAGMENT)
        for s in self.group.sample(steps):
            self.absorb(s, steps)

    def absorb(self, s: MultiAgentSample, steps: int) -> None:
        assert self.group is not None
        per_runner = steps * self.group.base.num_envs
        for p, n in s.agent_steps.items():
            seen = max(n / per_runner, 1e-3)
            self.rate[p] = 0.5 * self.rate[p] + 0.5 * seen if p in self.rate else seen
            self.stats.agent_steps[p] += n
        for p, r in s.rollouts.items():
            self.buffers[p].append(r)
            self.buffered[p] += r.batch.env_steps
        if self.recorder is not None and s.agent_episodes:
            self.recorder(s.agent_episodes, s.worker_index)
        self.stats.env_steps += s.env_steps
        self.stats.episode_returns += s.episode_returns
        self.stats.episode_lengths += s.episode_lengths
        self.stats.outcomes += s.outcomes
        if s.episode_metrics is not None:
            self.stats.episode_metrics.extend(s.episode_metrics)
        for p, eps in s.policy_episodes.items():
            self.stats.policy_episodes[p] += eps

    def drain(self) -> HubStats:
        stats, self.stats = self.stats, HubStats()
        return stats


class FeedRunnerGroup:
    """Stands in for an EnvRunnerGroup inside one policy's single-agent Algorithm."""

    def __init__(self, hub: ExperienceHub, pid: str, spaces: tuple[gym.Space[Any], gym.Space[Any]]) -> None:
        self.hub = hub
        self.pid = pid
        self._spaces = spaces
        self.restarts = 0
        self.runner_config: RunnerConfig | None = None  # the algorithm's, set when it builds its runners

    @property
    def num_healthy(self) -> int:
        return self.hub.group.num_healthy if self.hub.group is not None else 0

    def spaces(self) -> tuple[gym.Space[Any], gym.Space[Any]]:
        return self._spaces

    def sync(
        self,
        weights: dict[str, np.ndarray],
        filter_state: dict[str, Any] | None,
        options: dict[str, Any] | None = None,
    ) -> None:
        self.hub.update_policy(self.pid, weights, options)

    def sample(self) -> list[Rollout]:
        return self.hub.collect(self.pid)

    def attach(self, algo: Algorithm) -> FeedRunnerGroup:
        """The runner-group factory kuberl.build would pass: keeps the algorithm's RunnerConfig (the
        multi-agent runners build this policy's slot from it) and stands in for its runners."""
        self.runner_config = algo.runner_config
        return self

    def report(self) -> TrainResult:
        return {}

    def interrupt(self) -> None:
        """The multi-agent runners sample in bounded time."""

    def stop(self) -> None:
        return None  # the multi-agent algorithm stops the shared runners
