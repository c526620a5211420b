"""`spec.output`: the driver writes every transition its env runners sampled to Parquet.

The base Algorithm hands each Rollout to `ExperienceWriter.add` (so any algorithm records), the writer
cuts the [T, N] arrays into per-sub-environment episodes, keeps unfinished episodes until they end,
and writes a file once `maxRowsPerFile` rows of finished episodes are waiting. An episode therefore
never spans two files, and a file holds each of its episodes' rows in step order.

Files appear atomically: locally they are written under a hidden temporary name and renamed (readers
only see `*.parquet`), on S3 each file is one PutObject (S3 PUTs are atomic per object). So a reader
never sees a partial file, even while the run is still writing.
"""

from __future__ import annotations

import io
import logging
import os
import secrets
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import gymnasium as gym
import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from kuberl.checkpoint.uri import Location, parse_uri
from kuberl.core.env_runner import Rollout
from kuberl.core.offline.schema import C, action_type, arrow_schema, vector_column
from kuberl.core.sample_batch import Columns
from kuberl.spec.errors import SpecError
from kuberl.spec.offline import OutputSpec

log = logging.getLogger(__name__)


class Writer(Protocol):
    """What an Algorithm hands every Rollout to when the job sets spec.output (kuberl.build picks it:
    an ExperienceWriter, or kuberl.external's EpisodeRecorder in front of one)."""

    def add(self, rollout: Rollout) -> None: ...

    def close(self) -> None: ...


class Sink(Protocol):
    uri: str

    def put(self, name: str, data: bytes) -> str:
        """Store `data` as `name` atomically; returns the object's URI."""
        ...


class LocalSink:
    def __init__(self, location: Location) -> None:
        self.root = Path(location.path)
        self.uri = location.uri
        self.root.mkdir(parents=True, exist_ok=True)

    def put(self, name: str, data: bytes) -> str:
        final = self.root / name
        tmp = self.root / f".{name}.tmp"  # hidden and not *.parquet: no reader lists it
        with open(tmp, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, final)
        return final.as_uri()


class S3Sink:
    def __init__(self, location: Location, client: Any = None) -> None:
        from kuberl.checkpoint.s3 import make_client

        self.bucket = location.bucket
        self.prefix = location.path
        self.uri = location.uri
        self.client = client or make_client()

    def put(self, name: str, data: bytes) -> str:
        key = f"{self.prefix}/{name}" if self.prefix else name
        self.client.put_object(Bucket=self.bucket, Key=key, Body=data)
        return f"s3://{self.bucket}/{key}"


def open_sink(uri: str) -> Sink:
    location = parse_uri(uri)
    return S3Sink(location) if location.scheme == "s3" else LocalSink(location)


@dataclass
class _Episode:
    """Rows of one episode in progress (lists of per-rollout slices, joined when written)."""

    episode_id: int
    parts: dict[str, list[np.ndarray]] = field(default_factory=dict)
    rows: int = 0

    def append(self, columns: dict[str, np.ndarray]) -> None:
        for k, v in columns.items():
            self.parts.setdefault(k, []).append(v)
        self.rows += len(columns[C.REWARDS])


class ExperienceWriter:
    """Collects rollouts into episodes and writes Parquet files of finished episodes."""

    def __init__(
        self,
        spec: OutputSpec,
        obs_space: gym.Space[Any],
        action_space: gym.Space[Any],
        *,
        sink: Sink | None = None,
        filtered: bool = False,
    ) -> None:
        if filtered:
            # Runners keep only the normalized observations, and the filter moves during the run:
            # recorded data would mix scales no reader could undo.
            raise SpecError(
                [
                    (
                        "spec.output",
                        "cannot record with observationFilter MeanStdFilter (the runners only keep "
                        "normalized observations); use NoFilter for the recording run",
                    )
                ]
            )
        self.spec = spec
        self.sink = sink or open_sink(spec.uri)
        self.schema = arrow_schema(obs_space, action_space)
        self.obs_width = self.schema.field(C.OBS).type.list_size
        self.action_width = action_type(action_space)[1]
        # A random run id in the file names and the high bits of episode ids: runs (and restarts of one
        # run) writing to the same place never collide, so their files can be read together.
        self.run_id = secrets.randbits(31)
        self.next_episode = 0
        self.files_written = 0
        self.rows_written = 0
        self.open: dict[tuple[int, int], _Episode] = {}
        self.done: list[_Episode] = []
        self.done_rows = 0

    def _new_episode(self) -> _Episode:
        ep = _Episode(episode_id=(self.run_id << 32) | self.next_episode)
        self.next_episode += 1
        return ep

    def add(self, rollout: Rollout) -> None:
        """Record one rollout ([T, N] arrays from one runner); writes a file when enough rows wait."""
        b = rollout.batch
        if Columns.NEXT_OBS not in b:
            raise SpecError(
                [
                    (
                        "spec.output",
                        "these runners do not provide s' per transition, so their experience cannot be "
                        "recorded",
                    )
                ]
            )
        T, N = b.shape
        done = np.logical_or(b[Columns.TERMINATEDS], b[Columns.TRUNCATEDS])
        logp = b.get(Columns.ACTION_LOGP)
        for i in range(N):
            key = (rollout.worker_index, i)
            ends = np.flatnonzero(done[:, i])
            start = 0
            for stop in [*(ends + 1).tolist(), T]:
                if stop <= start:
                    continue
                ep = self.open.get(key) or self._new_episode()
                self.open[key] = ep
                sl = slice(start, stop)
                ep.append(
                    {
                        C.OBS: b[Columns.OBS][sl, i],
                        C.ACTIONS: b[Columns.ACTIONS][sl, i],
                        C.REWARDS: b[Columns.REWARDS][sl, i],
                        C.TERMINATEDS: b[Columns.TERMINATEDS][sl, i],
                        C.TRUNCATEDS: b[Columns.TRUNCATEDS][sl, i],
                        C.NEXT_OBS: b[Columns.NEXT_OBS][sl, i],
                        C.ACTION_LOGP: (
                            logp[sl, i] if logp is not None else np.full(stop - start, np.nan, np.float32)
                        ),
                    }
                )
                if done[stop - 1, i]:
                    self.done.append(self.open.pop(key))
                    self.done_rows += ep.rows
                start = stop
        if self.done_rows >= self.spec.max_rows_per_file:
            self.flush()

    def flush(self, *, include_open: bool = False) -> str | None:
        """Write the finished episodes (and, at the end of a run, the unfinished ones) as one file."""
        episodes = self.done
        if include_open:
            episodes = episodes + list(self.open.values())
            self.open.clear()
        self.done, self.done_rows = [], 0
        if not episodes:
            return None
        table = self.table(episodes)
        buf = io.BytesIO()
        codec = None if self.spec.compression == "none" else self.spec.compression
        # One row group per file: a file is the unit both of atomic visibility and of a read task.
        pq.write_table(table, buf, compression=codec, row_group_size=max(len(table), 1))
        name = f"part-{self.run_id:08x}-{self.files_written:06d}.parquet"
        uri = self.sink.put(name, buf.getvalue())
        self.files_written += 1
        self.rows_written += len(table)
        log.debug("wrote %d rows to %s", len(table), uri)
        return uri

    def table(self, episodes: list[_Episode]) -> pa.Table:
        cols = {
            k: np.concatenate([np.concatenate(ep.parts[k]) for ep in episodes]) for k in episodes[0].parts
        }
        ids = np.concatenate([np.full(ep.rows, ep.episode_id, np.int64) for ep in episodes])
        steps = np.concatenate([np.arange(ep.rows, dtype=np.int32) for ep in episodes])
        n = len(ids)
        actions = cols[C.ACTIONS]
        logp = cols[C.ACTION_LOGP].astype(np.float32)
        arrays = {
            C.EPISODE_ID: pa.array(ids),
            C.T: pa.array(steps),
            C.OBS: vector_column(cols[C.OBS].reshape(n, -1), self.obs_width),
            C.ACTIONS: (
                pa.array(actions.astype(np.int64).reshape(n))
                if self.action_width is None
                else vector_column(actions.reshape(n, -1), self.action_width)
            ),
            C.REWARDS: pa.array(cols[C.REWARDS].astype(np.float32)),
            C.TERMINATEDS: pa.array(cols[C.TERMINATEDS].astype(bool)),
            C.TRUNCATEDS: pa.array(cols[C.TRUNCATEDS].astype(bool)),
            C.NEXT_OBS: vector_column(cols[C.NEXT_OBS].reshape(n, -1), self.obs_width),
            C.ACTION_LOGP: pa.array(logp, mask=np.isnan(logp)),
        }
        return pa.Table.from_arrays([arrays[f.name] for f in self.schema], schema=self.schema)

    def close(self) -> None:
        """Write everything still buffered, unfinished episodes included (their last row is neither
        terminated nor truncated, which is how a reader tells them apart)."""
        self.flush(include_open=True)
