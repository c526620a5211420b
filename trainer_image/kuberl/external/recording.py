"""`spec.output` for external-simulator runs: the policy server's episodes, recorded whole.

The training batch lays fragments of many episodes end to end in one lane and marks a running
episode's cut as a truncation (that is what GAE needs). Handed to the ExperienceWriter as it is, every
cut would end an episode and unrelated episodes would share a lane. So each batch also carries one
part per episode fragment; `EpisodeRecorder` gives every external episode its own writer lane until it
ends, unmarks cuts, and calls the writer's public `add()` — one format and one writer for all runs.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import numpy as np

from kuberl.core.env_runner import Rollout
from kuberl.core.sample_batch import Columns, SampleBatch
from kuberl.external.episodes import Fragment

if TYPE_CHECKING:
    from kuberl.core.offline.writer import ExperienceWriter

# The columns the writer records (s' included; it is what an env runner stores for spec.output).
RECORDED = (
    Columns.OBS,
    Columns.ACTIONS,
    Columns.REWARDS,
    Columns.TERMINATEDS,
    Columns.TRUNCATEDS,
    Columns.NEXT_OBS,
    Columns.ACTION_LOGP,
)


@dataclass
class EpisodePart:
    """The steps of one episode in one batch, as [T, 1] columns; `ends`: the episode is over (ended or
    abandoned) with this part's last step."""

    episode_id: str
    ends: bool
    columns: dict[str, np.ndarray]


@dataclass
class ExternalRollout(Rollout):
    """A Rollout of the policy server, plus its steps per episode when the job records (spec.output)."""

    episodes: list[EpisodePart] = field(default_factory=list)


def episode_parts(fragments: list[Fragment], columns: dict[str, np.ndarray]) -> list[EpisodePart]:
    """Cut the one-lane columns of `fragments_to_columns(fragments)` (with NEXT_OBS and `needs_logp`)
    back into per-episode parts. A cut's last step is not a truncation in the recording (the episode
    goes on in the next part); a behaviour log-probability the client did not send is NaN (unknown),
    not the trainer's estimate."""
    parts = []
    start = 0
    for frag in fragments:
        sl = slice(start, start + len(frag.steps))
        start = sl.stop
        cols = {k: np.array(columns[k][sl]) for k in RECORDED}  # copies: the trainer edits its batch
        cols[Columns.ACTION_LOGP][columns["needs_logp"][sl]] = np.nan
        if frag.cut:
            cols[Columns.TRUNCATEDS][-1] = False
        parts.append(EpisodePart(frag.episode_id, ends=not frag.cut, columns=cols))
    return parts


class EpisodeRecorder:
    """What `Algorithm.writer` is for an external run: feeds each episode's parts to the
    ExperienceWriter on a lane of its own (the writer keys unfinished episodes by lane)."""

    def __init__(self, writer: ExperienceWriter) -> None:
        self.writer = writer
        self._lanes: dict[str, int] = {}
        self._next_lane = 0

    def add(self, rollout: Rollout) -> None:
        if not isinstance(rollout, ExternalRollout):
            raise TypeError("EpisodeRecorder records the policy server's ExternalRollouts only")
        for part in rollout.episodes:
            lane = self._lanes.get(part.episode_id)
            if lane is None:
                lane = self._lanes[part.episode_id] = self._next_lane
                self._next_lane += 1
            if part.ends:  # a client may reuse the id for a new episode: that one gets a new lane
                del self._lanes[part.episode_id]
            self.writer.add(Rollout(batch=SampleBatch(part.columns), worker_index=lane))

    def flush(self, *, include_open: bool = False) -> str | None:
        return self.writer.flush(include_open=include_open)

    def close(self) -> None:
        self.writer.close()
