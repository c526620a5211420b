"""Checkpoint errors.

One base class, so the trainer and CLI can catch every storage problem (missing bucket, bad
credentials, I/O error) in one place; a subclass for corruption, because load_latest() must tell a
damaged checkpoint (skip it, try an older one) apart from an unusable store (stop and report).
"""

from __future__ import annotations


class CheckpointError(Exception):
    """A checkpoint store cannot be used, or no usable checkpoint exists where one was asked for."""


class CorruptCheckpointError(CheckpointError):
    """A checkpoint is partial (no manifest) or damaged (a file's size or sha256 disagrees with it)."""
