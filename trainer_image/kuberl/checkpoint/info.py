"""The value types the store hands to the trainer."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True)
class CheckpointInfo:
    """A complete checkpoint as described by its manifest (its files are not verified by listing).

    `iteration` and `timesteps` are lifted out of `metadata` because ordering and the operator's
    status (lastCheckpoint, progress) need them without parsing free-form metadata. `run` names the
    training run that wrote it ("" for checkpoints written before runs had identities): iterations
    are only comparable within one run.
    """

    name: str
    uri: str
    iteration: int
    timesteps: int
    created: float
    run: str = ""
    metadata: dict[str, Any] = field(default_factory=dict, hash=False, compare=False)


@dataclass
class LoadedCheckpoint:
    """A checkpoint whose every file was read and verified against the manifest's size and sha256."""

    info: CheckpointInfo
    files: dict[str, bytes]
