"""`spec.input`: recorded experience read through Ray Data.

`ray.data.read_parquet` streams the files with `numReaders` parallel read tasks (local files, or S3
through pyarrow's S3FileSystem with the same endpoint and credentials boto3 resolves for checkpoints,
so a MinIO/moto endpoint in AWS_ENDPOINT_URL works), and `iter_batches` draws minibatches through a
local shuffle buffer, epoch after epoch (from the object store once `cache` materialized the
dataset, or re-read from the files each epoch without it). Returns-to-go (MARWIL) are computed
by the reader with the consumer's γ (γ belongs to the algorithm reading the data, not to the run that
recorded it): one Ray Data task per file, since kuberl's writer never splits an episode across files,
so no shuffle by episode id is needed.
"""

from __future__ import annotations

import fnmatch
import functools
import os
from collections.abc import Generator
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.fs as pafs

from kuberl.checkpoint.uri import parse_uri
from kuberl.core.offline.schema import C, table_to_numpy
from kuberl.spec.errors import SpecError
from kuberl.spec.offline import InputSpec

_GLOB_CHARS = ("*", "?", "[")


def s3_filesystem() -> pafs.S3FileSystem:
    """pyarrow's S3 client configured like boto3's: credentials from the default chain (resolved here,
    so Ray workers started before the variables were set still get them with the pickled filesystem)
    and the endpoint from AWS_ENDPOINT_URL_S3 / AWS_ENDPOINT_URL."""
    import boto3

    session = boto3.session.Session()
    kwargs: dict[str, Any] = {"region": session.region_name or "us-east-1"}
    creds = session.get_credentials()
    if creds is not None:
        frozen = creds.get_frozen_credentials()
        kwargs |= {"access_key": frozen.access_key, "secret_key": frozen.secret_key}
        if frozen.token:
            kwargs["session_token"] = frozen.token
    endpoint = os.environ.get("AWS_ENDPOINT_URL_S3") or os.environ.get("AWS_ENDPOINT_URL")
    if endpoint:
        scheme, _, host = endpoint.partition("://")
        kwargs |= {"endpoint_override": host.rstrip("/"), "scheme": scheme}
    return pafs.S3FileSystem(**kwargs)


def _expand(fs: pafs.FileSystem, path: str) -> list[str]:
    """A file, a directory (recursively) or a glob → the Parquet files it names, sorted."""
    if not any(ch in path for ch in _GLOB_CHARS):
        info = fs.get_file_info(path)
        if info.type == pafs.FileType.File:
            return [path]
        if info.type == pafs.FileType.Directory:
            selector = pafs.FileSelector(path, recursive=True)
            return sorted(
                i.path
                for i in fs.get_file_info(selector)
                if i.type == pafs.FileType.File and i.base_name.endswith(".parquet")
            )
        return []
    # The fixed directory part before the first glob character, listed recursively, then matched.
    head = path[: min(path.index(ch) for ch in _GLOB_CHARS if ch in path)]
    base = head.rsplit("/", 1)[0]
    selector = pafs.FileSelector(base, recursive=True, allow_not_found=True)
    return sorted(
        i.path
        for i in fs.get_file_info(selector)
        if i.type == pafs.FileType.File and fnmatch.fnmatchcase(i.path, path)
    )


def resolve_files(uris: list[str]) -> tuple[list[str], pafs.FileSystem]:
    """The Parquet files named by `spec.input.uris`, and the filesystem they live on."""
    locations = [parse_uri(u.replace("*", "_").replace("?", "_").replace("[", "_")) for u in uris]
    schemes = {loc.scheme for loc in locations}
    if len(schemes) > 1:
        raise SpecError([("spec.input.uris", "mixes local paths and s3:// URIs; use one kind")])
    fs: pafs.FileSystem = s3_filesystem() if schemes == {"s3"} else pafs.LocalFileSystem()
    files: list[str] = []
    for uri in uris:
        if uri.startswith("s3://"):
            path = uri.removeprefix("s3://").rstrip("/")
        elif uri.startswith("file://"):
            path = uri.removeprefix("file://")
        else:
            path = os.path.abspath(os.path.expanduser(uri))
        try:
            found = _expand(fs, path)
        except OSError as exc:
            raise SpecError([("spec.input.uris", f"cannot list {uri}: {exc}")]) from None
        if not found:
            raise SpecError([("spec.input.uris", f"{uri} names no .parquet files")])
        files.extend(found)
    return list(dict.fromkeys(files)), fs


def discounted_returns_to_go(rewards: np.ndarray, gamma: float) -> np.ndarray:
    """G_t = Σ_k γ^k r_{t+k} within one episode (no bootstrap after its last logged step)."""
    out = np.empty(len(rewards), dtype=np.float64)
    acc = 0.0
    for t in range(len(rewards) - 1, -1, -1):
        acc = float(rewards[t]) + gamma * acc
        out[t] = acc
    return out.astype(np.float32)


def add_returns_to_go(table: pa.Table, gamma: float) -> pa.Table:
    """Append `returns_to_go` to a table holding whole episodes (one file of kuberl's writer)."""
    ids = np.asarray(table.column(C.EPISODE_ID).to_numpy())
    steps = np.asarray(table.column(C.T).to_numpy())
    rewards = np.asarray(table.column(C.REWARDS).to_numpy())
    rtg = np.empty(len(ids), dtype=np.float32)
    for ep in np.unique(ids):
        idx = np.flatnonzero(ids == ep)
        idx = idx[np.argsort(steps[idx], kind="stable")]
        if steps[idx[0]] != 0 or not np.array_equal(np.diff(steps[idx]), np.ones(len(idx) - 1)):
            raise ValueError(
                f"episode {ep} is not whole within its file (steps {steps[idx[0]]}..{steps[idx[-1]]}); "
                "returns-to-go need files that hold whole episodes, as kuberl's writer produces"
            )
        rtg[idx] = discounted_returns_to_go(rewards[idx], gamma)
    return table.append_column(C.RETURNS_TO_GO, pa.array(rtg))


def _read_with_returns(batch: dict[str, np.ndarray], fs: pafs.FileSystem, gamma: float) -> pa.Table:
    """Ray Data task: read whole files (a batch of paths) and add their returns-to-go."""
    import pyarrow.parquet as pq

    tables = [add_returns_to_go(pq.read_table(str(p), filesystem=fs), gamma) for p in batch["path"]]
    return pa.concat_tables(tables)


class OfflineData:
    """An endless stream of shuffled minibatches from `spec.input`, plus whole episodes for OPE."""

    def __init__(
        self,
        spec: InputSpec,
        *,
        columns: tuple[str, ...],
        returns_to_go_gamma: float | None = None,
        seed: int | None = None,
    ) -> None:
        import ray

        from kuberl.core.ray_init import ensure_ray

        ensure_ray(spec.num_readers)
        self.spec = spec
        self.columns = columns
        self.seed = seed
        self.files, self.fs = resolve_files(spec.uris)
        context = ray.data.DataContext.get_current()
        context.enable_progress_bars = False
        # Blocks in file order whatever task finishes first, so a seeded run sees the same minibatches.
        context.execution_options.preserve_order = True
        if returns_to_go_gamma is None:
            ds = ray.data.read_parquet(
                self.files,
                filesystem=self.fs,
                concurrency=spec.num_readers,
                file_extensions=["parquet"],
                shuffle=None if spec.cache else "files",  # streaming: a new file order every epoch
            )
        else:
            # One task per file (kuberl's writer keeps every episode within one file), so the returns
            # are computed without a shuffle by episode id.
            ds = ray.data.from_items([{"path": f} for f in self.files]).map_batches(
                functools.partial(_read_with_returns, fs=self.fs, gamma=returns_to_go_gamma),
                batch_size=1,
                batch_format="numpy",
                compute=ray.data.TaskPoolStrategy(size=spec.num_readers),
            )
        ds = ds.select_columns(list(columns))
        # Materialized once: later epochs iterate blocks already in the object store (Ray spills them to
        # disk beyond its memory) instead of paying the read and the executor's start every epoch.
        self.dataset = ds.materialize() if spec.cache else ds
        self.epochs = 0
        self._it: Generator[dict[str, np.ndarray]] | None = None

    def _epoch(self, batch_size: int) -> Generator[dict[str, np.ndarray]]:
        shuffle = self.spec.shuffle_buffer_size
        # A fresh seed per epoch, so epochs differ yet a seeded run repeats itself.
        seed = None if self.seed is None else self.seed * 100_003 + self.epochs
        # The local shuffle buffer only mixes rows within a window, and blocks follow the files (an expert's
        # files, then a random policy's): visiting the blocks in a new random order each epoch keeps
        # minibatches from drawing on one source at a time. Cheap on a materialized dataset (no data moves).
        dataset = self.dataset.randomize_block_order(seed=seed) if self.spec.cache else self.dataset
        for table in dataset.iter_batches(
            batch_size=batch_size,
            batch_format="pyarrow",
            drop_last=True,
            local_shuffle_buffer_size=max(shuffle, batch_size) if shuffle else None,
            local_shuffle_seed=seed if shuffle else None,
        ):
            yield table_to_numpy(table, self.columns)

    def next_batch(self, batch_size: int) -> dict[str, np.ndarray]:
        """The next minibatch of `batch_size` rows; a new epoch starts when one runs out."""
        for _ in range(2):
            if self._it is None:
                self._it = self._epoch(batch_size)
            batch = next(self._it, None)
            if batch is not None:
                return batch
            self._it = None
            self.epochs += 1
        raise ValueError(f"spec.input holds fewer than {batch_size} rows: smaller train_batch_size needed")

    def close(self) -> None:
        """Stop the running epoch's iterator while Ray is still up (else it is torn down at interpreter
        exit, after Ray, with a traceback)."""
        if self._it is not None:
            self._it.close()
            self._it = None

    def episodes(self, count: int, columns: tuple[str, ...]) -> list[dict[str, np.ndarray]]:
        """Up to `count` complete logged episodes (every step from t=0, ending terminated or truncated),
        from the first files in order, each as columns sorted by step. Read in the driver with pyarrow:
        a bounded sample for off-policy estimation, not a pass over the dataset."""
        import pyarrow.parquet as pq

        if count <= 0:
            return []
        need = tuple(dict.fromkeys((C.EPISODE_ID, C.T, C.TERMINATEDS, C.TRUNCATEDS, *columns)))
        found: list[dict[str, np.ndarray]] = []
        for path in self.files:
            table = pq.read_table(path, filesystem=self.fs, columns=list(need))
            found.extend(complete_episodes(table_to_numpy(table, need)))
            if len(found) >= count:
                break
        return found[:count]


def complete_episodes(data: dict[str, np.ndarray]) -> list[dict[str, np.ndarray]]:
    """Group rows by episode id (in first-seen order), keep those with steps 0..L-1 that end done."""
    ids = data[C.EPISODE_ID]
    _, first, inverse = np.unique(ids, return_index=True, return_inverse=True)
    out = []
    for g in np.argsort(first):
        idx = np.flatnonzero(inverse == g)
        idx = idx[np.argsort(data[C.T][idx], kind="stable")]
        steps = data[C.T][idx]
        last = idx[-1]
        if not np.array_equal(steps, np.arange(len(idx))):
            continue
        if not (data[C.TERMINATEDS][last] or data[C.TRUNCATEDS][last]):
            continue
        out.append({k: v[idx] for k, v in data.items()})
    return out
