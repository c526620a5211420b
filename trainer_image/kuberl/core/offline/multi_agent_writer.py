"""`spec.output` for multi-agent jobs: every agent's whole episodes, one Parquet row per agent step.

The multi-agent runners (with `record`) return each agent episode once it has ended, uncut by sample
boundaries (kuberl.core.multi_agent.runner.AgentEpisode). Policies may observe and act in different
spaces, so each policy gets its own directory, `<uri>/<policy>/part-<run>-<n>.parquet`, in the
single-agent format (docs/offline.md) plus three columns: `agent_id`, `policy_id` and `env_episode_id`.
`episode_id` is one agent's episode, so a policy's directory is itself a valid `spec.input` for BC,
MARWIL or CQL (returns-to-go and OPE per agent), and `env_episode_id` joins the agents of one game.

Every policy is recorded, trained or not (frozen, random, self-play opponents under the opponent
policy's name). Files appear atomically as the single-agent writer's do; episodes still running when
training stops are not recorded (their agents' steps would have no end).
"""

from __future__ import annotations

import secrets
from collections import OrderedDict
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

import gymnasium as gym
import numpy as np
import pyarrow as pa

from kuberl.core.multi_agent.runner import AgentEpisode
from kuberl.core.offline.schema import C, arrow_schema
from kuberl.core.offline.writer import ExperienceWriter, Sink, _Episode, open_sink
from kuberl.spec.offline import OutputSpec

# Env episodes whose id is remembered until all their agents' episodes have arrived; agents of one game
# end at most a few env episodes apart, so this bound is never reached by a live game.
_ENV_EPISODE_MEMORY = 100_000


def policy_uri(uri: str, policy: str) -> str:
    """Where one policy's files go: a subdirectory (or S3 sub-prefix) named after the policy."""
    return f"{uri.rstrip('/')}/{policy}"


@dataclass
class _AgentRows(_Episode):
    agent_id: str = ""
    policy_id: str = ""
    env_episode_id: int = 0


class PolicyRecorder(ExperienceWriter):
    """One policy's directory: the single-agent writer's files and batching, with the agent columns."""

    def __init__(
        self, spec: OutputSpec, obs_space: gym.Space[Any], action_space: gym.Space[Any], *, sink: Sink
    ) -> None:
        super().__init__(spec, obs_space, action_space, sink=sink)
        self.file_schema = arrow_schema(obs_space, action_space, multi_agent=True)

    def add_episode(self, episode: AgentEpisode, env_episode_id: int) -> None:
        rows = _AgentRows(
            episode_id=self._new_episode().episode_id,
            agent_id=episode.agent_id,
            policy_id=episode.policy_id,
            env_episode_id=env_episode_id,
        )
        rows.append(
            {
                C.OBS: episode.obs,
                C.ACTIONS: episode.actions,
                C.REWARDS: episode.rewards,
                C.TERMINATEDS: episode.terminateds,
                C.TRUNCATEDS: episode.truncateds,
                C.NEXT_OBS: episode.next_obs,
                C.ACTION_LOGP: episode.action_logp,
            }
        )
        self.done.append(rows)
        self.done_rows += rows.rows
        if self.done_rows >= self.spec.max_rows_per_file:
            self.flush()

    def table(self, episodes: list[_Episode]) -> pa.Table:
        base = super().table(episodes)
        agents = [ep for ep in episodes if isinstance(ep, _AgentRows)]
        assert len(agents) == len(episodes), "a policy recorder only holds agent episodes"

        def column(values: list[Any], dtype: Any) -> np.ndarray:
            return np.concatenate(
                [np.full(ep.rows, v, dtype=dtype) for ep, v in zip(agents, values, strict=True)]
            )

        extra = [
            pa.array(column([ep.agent_id for ep in agents], object), pa.string()),
            pa.array(column([ep.policy_id for ep in agents], object), pa.string()),
            pa.array(column([ep.env_episode_id for ep in agents], np.int64)),
        ]
        return pa.Table.from_arrays([*base.columns, *extra], schema=self.file_schema)


class MultiAgentExperienceWriter:
    """Routes each agent episode to its policy's recorder and numbers the env episodes."""

    def __init__(
        self,
        spec: OutputSpec,
        spaces: Mapping[str, tuple[gym.Space[Any], gym.Space[Any]]],
        *,
        sinks: Mapping[str, Sink] | None = None,
    ) -> None:
        sinks = sinks or {}
        self.recorders = {
            pid: PolicyRecorder(
                spec, obs_space, action_space, sink=sinks.get(pid) or open_sink(policy_uri(spec.uri, pid))
            )
            for pid, (obs_space, action_space) in spaces.items()
        }
        # env_episode_id = run id (high bits) | a counter, as the single-agent writer's episode ids.
        self.run_id = secrets.randbits(31)
        self.env_ids: OrderedDict[tuple[int, int, int], int] = OrderedDict()
        self.next_env = 0

    def _env_episode_id(self, worker_index: int, key: tuple[int, int]) -> int:
        full = (worker_index, *key)
        found = self.env_ids.get(full)
        if found is None:
            found = self.env_ids[full] = (self.run_id << 32) | self.next_env
            self.next_env += 1
            if len(self.env_ids) > _ENV_EPISODE_MEMORY:
                self.env_ids.popitem(last=False)
        return found

    def add(self, episodes: Iterable[AgentEpisode], *, worker_index: int = 0) -> None:
        for episode in episodes:
            env_id = self._env_episode_id(worker_index, episode.env_episode)
            self.recorders[episode.policy_id].add_episode(episode, env_id)

    @property
    def rows_written(self) -> int:
        return sum(r.rows_written for r in self.recorders.values())

    @property
    def files_written(self) -> int:
        return sum(r.files_written for r in self.recorders.values())

    def close(self) -> None:
        for recorder in self.recorders.values():
            recorder.close()
