"""Checkpoint storage: one interface over a local directory and S3.

A checkpoint is a directory of files plus a `manifest.json` (a sha256 and size per file, and the
trainer's metadata) written last; only checkpoints with a manifest exist as far as readers are
concerned, and every file is verified before it is returned. `latest` at the root names the newest.
This package imports neither torch nor ray (the trainer serialises state to bytes itself), and boto3
only when an S3 store is used.

    store = open_store("s3://bucket/runs/ppo")   # or a path, or file:///path
    store.check_access()
    store.save("checkpoint_000010", {"state.pt": blob}, metadata={"iteration": 10, "timesteps": 40000})
    ckpt = store.load_latest()                   # None when there is none
    store.prune(keep=3)
    ckpt = load_checkpoint("s3://bucket/runs/ppo/checkpoint_000010")   # `resume: <URI>`
"""

from __future__ import annotations

from kuberl.checkpoint.errors import CheckpointError, CorruptCheckpointError, StoreUnavailableError
from kuberl.checkpoint.info import CheckpointInfo, LoadedCheckpoint
from kuberl.checkpoint.store import CheckpointStore
from kuberl.checkpoint.uri import Location, parse_uri

__all__ = [
    "CheckpointError",
    "CheckpointInfo",
    "CheckpointStore",
    "CorruptCheckpointError",
    "LoadedCheckpoint",
    "StoreUnavailableError",
    "load_checkpoint",
    "open_store",
]


def _store_at(location: Location) -> CheckpointStore:
    if location.scheme == "s3":
        from kuberl.checkpoint.s3 import S3CheckpointStore

        return S3CheckpointStore(location)
    from kuberl.checkpoint.local import LocalCheckpointStore

    return LocalCheckpointStore(location)


def open_store(uri: str) -> CheckpointStore:
    """The store rooted at `uri` (a path, file:///path or s3://bucket/prefix). Touches no storage."""
    return _store_at(parse_uri(uri))


def load_checkpoint(uri: str) -> LoadedCheckpoint:
    """Load what `resume: <URI>` names: one checkpoint directory, or a store root (its newest valid one).

    An explicitly named checkpoint that is corrupt raises CorruptCheckpointError rather than falling
    back to another one: the user asked for that one. Raises CheckpointError when nothing is found.
    """
    location = parse_uri(uri)
    store = _store_at(location)
    if store.holds_checkpoint():
        split = location.split()
        if split is None:
            raise CheckpointError(f"{store.uri} holds a manifest at the root of the filesystem or bucket")
        parent, name = split
        return _store_at(parent).load(name)
    loaded = store.load_latest()
    if loaded is None:
        raise CheckpointError(
            f"no complete, valid checkpoint at {store.uri}: it is neither a checkpoint directory "
            "(with manifest.json) nor a checkpoint root holding one"
        )
    return loaded
