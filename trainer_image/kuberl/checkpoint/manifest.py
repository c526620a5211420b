"""Pure manifest logic: building, parsing and verifying, with no I/O.

The manifest is what makes a checkpoint complete: it is written last, after every file, so a save
interrupted at any point leaves no manifest and is never loaded. It records a sha256 and a size per
file, so a truncated or bit-flipped file is caught before the trainer unpickles it. Keeping this
module free of I/O lets the local and S3 stores share it and lets tests cover it without a store.
"""

from __future__ import annotations

import hashlib
import json
import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, TypeGuard

from kuberl.checkpoint.errors import CorruptCheckpointError

MANIFEST_FILE = "manifest.json"
LATEST_FILE = "latest"
FORMAT = "kuberl-checkpoint"
FORMAT_VERSION = 1
REQUIRED_METADATA = ("iteration", "timesteps")
#: Metadata key of the run identity (see store.py); absent in checkpoints of older kuberl versions.
RUN_KEY = "run"


@dataclass(frozen=True)
class FileEntry:
    """What the manifest promises about one file."""

    sha256: str
    size: int


@dataclass(frozen=True)
class Manifest:
    """A parsed manifest. `metadata` is guaranteed to hold int `iteration` and `timesteps`."""

    files: dict[str, FileEntry]
    metadata: dict[str, Any]
    created: float
    version: int = FORMAT_VERSION

    @property
    def iteration(self) -> int:
        return int(self.metadata["iteration"])

    @property
    def timesteps(self) -> int:
        return int(self.metadata["timesteps"])

    @property
    def run(self) -> str:
        return str(self.metadata.get(RUN_KEY) or "")

    def to_bytes(self) -> bytes:
        """Serialise deterministically (sorted keys) so identical saves give identical manifests."""
        doc = {
            "format": FORMAT,
            "version": self.version,
            "created": self.created,
            "files": {k: {"sha256": v.sha256, "size": v.size} for k, v in sorted(self.files.items())},
            "metadata": self.metadata,
        }
        return (json.dumps(doc, indent=2, sort_keys=True) + "\n").encode()


def validate_name(name: str) -> str:
    """A checkpoint name is one path segment: it becomes a directory locally and a key prefix on S3.

    Names starting with "." are reserved for temporary and probe objects, which listings ignore.
    """
    if (
        not isinstance(name, str)
        or not name
        or name in (".", "..", LATEST_FILE)
        or name.startswith(".")
        or "/" in name
        or "\\" in name
        or "\x00" in name
    ):
        raise ValueError(
            f"invalid checkpoint name {name!r}: expected one path segment like 'checkpoint_000010'"
        )
    return name


def validate_file_name(path: str) -> str:
    """File names are relative POSIX paths inside the checkpoint; no escaping it, no reserved names."""
    parts = path.split("/") if isinstance(path, str) else [""]
    if (
        not path
        or path == MANIFEST_FILE
        or "\\" in path
        or "\x00" in path
        or any(p in ("", ".", "..") or p.startswith(".") for p in parts)
    ):
        raise ValueError(
            f"invalid checkpoint file name {path!r}: expected a relative path like 'policy/model.pt'"
        )
    return path


def _is_int(value: Any) -> TypeGuard[int]:
    return isinstance(value, int) and not isinstance(value, bool)


def validate_metadata(metadata: Mapping[str, Any]) -> dict[str, Any]:
    """Check the keys ordering relies on and that the whole mapping survives JSON."""
    meta = dict(metadata)
    for key in REQUIRED_METADATA:
        if not _is_int(meta.get(key)) or meta[key] < 0:
            raise ValueError(f"checkpoint metadata needs a non-negative int {key!r}, got {meta.get(key)!r}")
    if not isinstance(meta.get(RUN_KEY, ""), str):
        raise ValueError(f"checkpoint metadata {RUN_KEY!r} must be a string, got {meta[RUN_KEY]!r}")
    try:
        json.dumps(meta, allow_nan=False)
    except (TypeError, ValueError) as exc:
        raise ValueError(f"checkpoint metadata must be JSON-serialisable: {exc}") from exc
    return meta


def file_entry(data: bytes) -> FileEntry:
    return FileEntry(sha256=hashlib.sha256(data).hexdigest(), size=len(data))


def build_manifest(files: Mapping[str, bytes], metadata: Mapping[str, Any], created: float) -> Manifest:
    """Describe `files`; raises ValueError for names or metadata the store could not round-trip."""
    if not files:
        raise ValueError("a checkpoint needs at least one file")
    entries = {validate_file_name(name): file_entry(bytes(data)) for name, data in files.items()}
    return Manifest(files=entries, metadata=validate_metadata(metadata), created=float(created))


def parse_manifest(data: bytes, where: str) -> Manifest:
    """Parse and validate a manifest; anything unexpected is corruption, reported with `where`."""

    def bad(reason: str) -> CorruptCheckpointError:
        return CorruptCheckpointError(f"{where}: invalid {MANIFEST_FILE}: {reason}")

    try:
        doc = json.loads(data.decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise bad(f"not JSON ({exc})") from exc
    if not isinstance(doc, dict) or doc.get("format") != FORMAT:
        raise bad(f"not a {FORMAT} manifest")
    version = doc.get("version")
    if not _is_int(version) or version < 1:
        raise bad(f"bad version {version!r}")
    if version > FORMAT_VERSION:
        raise bad(f"format version {version} is newer than this kuberl understands ({FORMAT_VERSION})")
    created = doc.get("created")
    if not isinstance(created, int | float) or isinstance(created, bool) or not math.isfinite(created):
        raise bad(f"bad created timestamp {created!r}")
    raw_files = doc.get("files")
    if not isinstance(raw_files, dict) or not raw_files:
        raise bad("no files listed")
    files: dict[str, FileEntry] = {}
    for name, entry in raw_files.items():
        try:
            validate_file_name(name)
        except ValueError as exc:
            raise bad(str(exc)) from exc
        if not isinstance(entry, dict):
            raise bad(f"entry for {name!r} is not an object")
        sha, size = entry.get("sha256"), entry.get("size")
        if not isinstance(sha, str) or len(sha) != 64 or any(c not in "0123456789abcdef" for c in sha):
            raise bad(f"bad sha256 for {name!r}")
        if not _is_int(size) or size < 0:
            raise bad(f"bad size for {name!r}")
        files[name] = FileEntry(sha256=sha, size=size)
    metadata = doc.get("metadata")
    if not isinstance(metadata, dict):
        raise bad("metadata is not an object")
    try:
        metadata = validate_metadata(metadata)
    except ValueError as exc:
        raise bad(str(exc)) from exc
    return Manifest(files=files, metadata=metadata, created=float(created), version=version)


def verify_file(manifest: Manifest, name: str, data: bytes | None, where: str) -> None:
    """Raise CorruptCheckpointError naming the file when it is missing, truncated or altered."""
    expected = manifest.files[name]
    if data is None:
        raise CorruptCheckpointError(f"{where}: file {name!r} is missing")
    if len(data) != expected.size:
        raise CorruptCheckpointError(
            f"{where}: file {name!r} has {len(data)} bytes, the manifest says {expected.size} "
            "(truncated or altered)"
        )
    actual = hashlib.sha256(data).hexdigest()
    if actual != expected.sha256:
        raise CorruptCheckpointError(
            f"{where}: file {name!r} sha256 {actual} does not match manifest {expected.sha256}"
        )


def build_latest(name: str, manifest: Manifest) -> bytes:
    """The `latest` pointer: a small JSON object, readable by humans and by tools without a parser."""
    doc = {
        "name": name,
        "iteration": manifest.iteration,
        "timesteps": manifest.timesteps,
        "created": manifest.created,
        RUN_KEY: manifest.run,
    }
    return (json.dumps(doc, sort_keys=True) + "\n").encode()


def parse_latest(data: bytes) -> str | None:
    """The checkpoint name a `latest` pointer names, or None when it is unreadable (then listings decide).

    A bare name (plain text) is accepted too, so a pointer written by hand or by `echo` works.
    """
    try:
        text = data.decode("utf-8").strip()
    except UnicodeDecodeError:
        return None
    name: Any = text
    if text.startswith("{"):
        try:
            name = json.loads(text).get("name")
        except (json.JSONDecodeError, AttributeError):
            return None
    try:
        return validate_name(name)
    except ValueError:
        return None
