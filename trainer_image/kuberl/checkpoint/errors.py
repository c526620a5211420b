"""Checkpoint errors.

One base class, so the trainer and CLI can catch every storage problem (missing bucket, bad
credentials, I/O error) in one place; a subclass for corruption, because load_latest() must tell a
damaged checkpoint (skip it, try an older one) apart from an unusable store (stop and report).
"""

from __future__ import annotations


class CheckpointError(Exception):
    """A checkpoint store cannot be used, or no usable checkpoint exists where one was asked for."""


class StoreUnavailableError(CheckpointError):
    """The store could not be reached: connection refused or timed out, a 5xx answer, throttling. Bad
    luck rather than bad input: the same request may succeed later, so a run that meets it at start-up
    exits 75 (retried by the operator), not 2 (refused for good)."""


class CorruptCheckpointError(CheckpointError):
    """A checkpoint is partial (no manifest) or damaged (a file's size or sha256 disagrees with it)."""


class UnsafeCheckpointError(CorruptCheckpointError):
    """A checkpoint's state file holds objects kuberl never writes (e.g. a pickled callable): it is
    refused without running anything, because the store is a trust boundary (docs/reliability.md).
    A kind of corruption, so `resume: auto` skips it like a damaged checkpoint and takes an older one."""


class CheckpointMismatchError(CheckpointError, ValueError):
    """A valid checkpoint that this job cannot restore (another algorithm, other network sizes); a
    ValueError too, as set_state's refusals were before."""
