"""The store interface and the checkpoint protocol shared by every backend.

Backends (local directory, S3) implement a handful of blob operations; everything that decides
whether a checkpoint is complete, valid, newest or prunable lives here once, so the two backends
cannot drift apart. The protocol:

- save: delete any previous same-named checkpoint (manifest first), write the files, write the
  manifest LAST, then point `latest` at it if it is the newest. A crash at any step leaves either the
  old state or a directory without a manifest, which is never loaded.
- list: directories with a parseable manifest, oldest to newest.
- load: every file is checked against the manifest's size and sha256 before it is returned.
- load_latest: the listing, not the `latest` pointer, is the truth (the pointer can lag behind a
  crash between manifest and pointer, or name a pruned checkpoint); corrupt ones are skipped.

Runs: one store can hold checkpoints of several training runs (`resume: never` starts a new one in
the same place). Each manifest names its run (metadata "run"), and iterations are compared only
within a run: runs are ordered by their newest checkpoint's creation time, checkpoints within a run
by (iteration, created). So a new run's checkpoint_000003 outranks an older run's checkpoint_000008,
`latest` follows the new run, and retention (`prune(keep, run=…)`) only ever deletes checkpoints of
the run that is saving (review H1: ranking every iteration together deleted each new save at once).
"""

from __future__ import annotations

import abc
import builtins
import logging
import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Any

from kuberl.checkpoint.errors import CheckpointError, CorruptCheckpointError
from kuberl.checkpoint.info import CheckpointInfo, LoadedCheckpoint
from kuberl.checkpoint.manifest import (
    LATEST_FILE,
    MANIFEST_FILE,
    Manifest,
    build_latest,
    build_manifest,
    parse_latest,
    parse_manifest,
    validate_name,
    verify_file,
)
from kuberl.checkpoint.uri import Location, parse_uri

logger = logging.getLogger("kuberl.checkpoint")


@dataclass(frozen=True)
class Entry:
    """What a backend's listing says about one top-level directory: its files' sizes, newest mtime."""

    files: dict[str, int]
    modified: float


class CheckpointStore(abc.ABC):
    """One checkpoint root (a directory or an S3 prefix) holding `<name>/…` checkpoints and `latest`."""

    def __init__(self, location: Location) -> None:
        self._location = location

    @property
    def uri(self) -> str:
        """The normalised root URI (file:///… or s3://bucket/prefix)."""
        return self._location.uri

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.uri!r})"

    # ---- backend primitives; keys are "/"-separated and relative to the root -------------------

    @abc.abstractmethod
    def check_access(self) -> None:
        """Raise CheckpointError naming the URI and the reason unless the root is writable now."""

    @abc.abstractmethod
    def _read(self, key: str) -> bytes | None:
        """The object's bytes, or None when it does not exist."""

    @abc.abstractmethod
    def _write(self, key: str, data: bytes) -> None:
        """Write one object so that readers see either nothing or all of it."""

    @abc.abstractmethod
    def _scan(self) -> dict[str, Entry]:
        """Every top-level directory (names starting with "." excluded) and the files under it."""

    @abc.abstractmethod
    def _exists(self, name: str) -> bool:
        """Whether anything is stored under `<name>/`."""

    @abc.abstractmethod
    def _delete(self, name: str) -> None:
        """Delete `<name>/` entirely, manifest first, so a half-deleted checkpoint is never complete."""

    # ---- the protocol ----------------------------------------------------------------------------

    def save(self, name: str, files: Mapping[str, bytes], *, metadata: Mapping[str, Any]) -> CheckpointInfo:
        """Write a checkpoint; it becomes visible (listable, loadable) only when its manifest lands."""
        validate_name(name)
        manifest = build_manifest(files, metadata, created=time.time())
        if self._exists(name):
            self._delete(name)
        for file_name, data in files.items():
            self._write(f"{name}/{file_name}", bytes(data))
        self._write(f"{name}/{MANIFEST_FILE}", manifest.to_bytes())
        info = self._info(name, manifest)
        current = self._pointer_manifest()
        # Another run's pointer is superseded by any save of this run; within a run, by a newer one.
        if current is None or current.run != manifest.run or _order(current) <= _order(manifest):
            self._write(LATEST_FILE, build_latest(name, manifest))
        return info

    def list(self) -> builtins.list[CheckpointInfo]:
        """Complete checkpoints (manifest present and parseable), oldest to newest."""
        return [info for info, _ in self._complete(self._scan())]

    def load(self, name_or_uri: str) -> LoadedCheckpoint:
        """Load one checkpoint by name or by its URI inside this store, verifying every file."""
        return self._load(self._name_of(name_or_uri))

    def load_latest(self) -> LoadedCheckpoint | None:
        """The newest complete and valid checkpoint; corrupt or partial newer ones are skipped, warned."""
        return next(self.candidates(), None)

    def candidates(self) -> Iterator[LoadedCheckpoint]:
        """Complete, verified checkpoints, newest first; corrupt or partial ones are skipped with a
        warning. A caller that finds one unusable (e.g. its state is refused) takes the next."""
        entries = self._scan()
        complete = [info for info, _ in self._complete(entries)]
        names = {info.name for info in complete}
        for name in sorted(set(entries) - names):
            if MANIFEST_FILE not in entries[name].files:
                logger.warning(
                    "skipping corrupt checkpoint: %s: incomplete, no %s (an interrupted save?)",
                    self._location.child(name).uri,
                    MANIFEST_FILE,
                )
        pointer = self._pointer_name()
        if pointer is not None and pointer not in names:
            logger.warning(
                "%s/%s names %r, which is missing or incomplete; using the newest complete one instead",
                self.uri,
                LATEST_FILE,
                pointer,
            )
        for info in reversed(complete):
            try:
                loaded = self._load(info.name)
            except CorruptCheckpointError as exc:
                logger.warning("skipping corrupt checkpoint: %s", exc)
                continue
            yield loaded

    def prune(self, keep: int, *, run: str | None = None) -> builtins.list[str]:
        """Delete complete checkpoints of `run` beyond its newest `keep`, and stray partial directories
        older than its newest complete one. Returns the deleted names (complete ones oldest first, then
        partials). `run=None` means the newest run; other runs' checkpoints are never deleted.

        Only checkpoints whose files are all present with the manifest's sizes (a cheap check from the
        listing, no download) count towards `keep`, so a damaged newest checkpoint cannot push the last
        good one out. With no such checkpoint nothing is deleted. Bit flips are not detected here.
        """
        if keep < 1:
            raise ValueError(f"keep must be >= 1, got {keep}")
        entries = self._scan()
        everything = self._complete(entries, warn=False)
        if run is None:
            run = everything[-1][0].run if everything else ""
        pairs = [(info, manifest) for info, manifest in everything if info.run == run]
        complete = [info for info, _ in pairs]
        sound = [info for info, manifest in pairs if _sizes_match(manifest, entries[info.name])]
        if not sound:
            return []
        newest = sound[-1]
        kept = {info.name for info in sound[-keep:]}
        doomed = [
            info.name
            for info in complete
            if info.name not in kept and _info_order(info) < _info_order(newest)
        ]
        complete_names = {info.name for info, _ in everything}
        doomed += sorted(
            name
            for name, entry in entries.items()
            if name not in complete_names and entry.modified < newest.created
        )
        for name in doomed:
            self._delete(name)
            logger.info("pruned checkpoint %s", self._location.child(name).uri)
        return doomed

    # ---- helpers ---------------------------------------------------------------------------------

    def holds_checkpoint(self) -> bool:
        """Whether this root is itself one checkpoint directory (used to interpret `resume: <URI>`)."""
        return self._read(MANIFEST_FILE) is not None

    def _info(self, name: str, manifest: Manifest) -> CheckpointInfo:
        return CheckpointInfo(
            name=name,
            uri=self._location.child(name).uri,
            iteration=manifest.iteration,
            timesteps=manifest.timesteps,
            created=manifest.created,
            run=manifest.run,
            metadata=dict(manifest.metadata),
        )

    def _manifest(self, name: str) -> Manifest | None:
        raw = self._read(f"{name}/{MANIFEST_FILE}")
        return None if raw is None else parse_manifest(raw, self._location.child(name).uri)

    def _complete(
        self, entries: Mapping[str, Entry], warn: bool = True
    ) -> builtins.list[tuple[CheckpointInfo, Manifest]]:
        """Parsed manifests of complete checkpoints, oldest to newest: runs by their newest checkpoint's
        creation time, then (iteration, created, name) within a run."""
        pairs = []
        for name, entry in entries.items():
            if MANIFEST_FILE not in entry.files:
                continue
            try:
                manifest = self._manifest(name)
            except CorruptCheckpointError as exc:
                if warn:
                    logger.warning("skipping corrupt checkpoint: %s", exc)
                continue
            if manifest is not None:  # None: deleted between listing and reading
                pairs.append((self._info(name, manifest), manifest))
        run_newest: dict[str, float] = {}
        for info, _ in pairs:
            run_newest[info.run] = max(run_newest.get(info.run, info.created), info.created)
        return sorted(pairs, key=lambda p: (run_newest[p[0].run], p[0].run, *_info_order(p[0]), p[0].name))

    def _load(self, name: str) -> LoadedCheckpoint:
        uri = self._location.child(name).uri
        raw = self._read(f"{name}/{MANIFEST_FILE}")
        if raw is None:
            if self._exists(name):
                raise CorruptCheckpointError(f"{uri}: incomplete, no {MANIFEST_FILE} (an interrupted save?)")
            raise CheckpointError(f"no checkpoint at {uri}")
        manifest = parse_manifest(raw, uri)
        files = {}
        for file_name in manifest.files:
            data = self._read(f"{name}/{file_name}")
            verify_file(manifest, file_name, data, uri)
            assert data is not None  # verify_file raised otherwise
            files[file_name] = data
        return LoadedCheckpoint(info=self._info(name, manifest), files=files)

    def _name_of(self, name_or_uri: str) -> str:
        """Accept a bare name, or a URI/path of a checkpoint directly under this root."""
        if "://" not in name_or_uri and "/" not in name_or_uri:
            return validate_name(name_or_uri)
        split = parse_uri(name_or_uri).split()
        if split is None or split[0] != self._location:
            raise CheckpointError(f"{name_or_uri!r} is not a checkpoint in store {self.uri}")
        return validate_name(split[1])

    def _pointer_name(self) -> str | None:
        raw = self._read(LATEST_FILE)
        return None if raw is None else parse_latest(raw)

    def _pointer_manifest(self) -> Manifest | None:
        name = self._pointer_name()
        if name is None:
            return None
        try:
            return self._manifest(name)
        except CorruptCheckpointError:
            return None


def _order(manifest: Manifest) -> tuple[int, float]:
    return manifest.iteration, manifest.created


def _info_order(info: CheckpointInfo) -> tuple[int, float]:
    return info.iteration, info.created


def _sizes_match(manifest: Manifest, entry: Entry) -> bool:
    """Cheap structural check from a listing: every file present with the promised size."""
    return all(entry.files.get(name) == e.size for name, e in manifest.files.items())
