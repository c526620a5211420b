"""Checkpoint saves under a deadline, so a hung store cannot freeze training (review M3).

boto3 bounds each request (connect/read timeouts, retries), but a save is many requests (list, one
PUT per file, the manifest, the pointer, the prune listing), so a store that accepts connections and
then stalls could hold the training loop for many minutes with nothing counted or logged. Here each
save runs on its own daemon thread from already-serialised bytes; the caller waits at most
`deadline_s`, then gets a CheckpointTimeoutError and carries on training. A save that is still running
blocks the next one (two writers must never race on the same store), and `in_progress_s()` is what
`/status` and `/metrics` show while one runs. The stalled thread is a daemon: it cannot keep the
process alive at exit.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Mapping
from typing import Any

from kuberl.checkpoint.errors import CheckpointError
from kuberl.checkpoint.info import CheckpointInfo
from kuberl.checkpoint.store import CheckpointStore

#: Default bound on one save (files, manifest, pointer and retention), in seconds.
DEFAULT_DEADLINE_S = 300.0


class CheckpointTimeoutError(CheckpointError):
    """A save did not finish within its deadline (the store is hung or very slow); it may still land."""


class CheckpointWriter:
    """Saves to one store, one at a time, each bounded by `deadline_s`."""

    def __init__(self, store: CheckpointStore, *, deadline_s: float = DEFAULT_DEADLINE_S) -> None:
        if not deadline_s > 0:
            raise ValueError(f"deadline_s must be positive, got {deadline_s}")
        self.store = store
        self.deadline_s = deadline_s
        self._thread: threading.Thread | None = None
        self._started: float | None = None
        self._lock = threading.Lock()

    def in_progress_s(self) -> float | None:
        """Seconds the running save has taken so far, or None when none is running."""
        with self._lock:
            started = self._started
        return None if started is None else time.monotonic() - started

    def wait(self, timeout_s: float) -> bool:
        """Wait up to `timeout_s` for a running save; True when none is running any more."""
        thread = self._thread
        if thread is not None:
            thread.join(timeout_s)
        return thread is None or not thread.is_alive()

    def save(
        self, name: str, files: Mapping[str, bytes], *, metadata: Mapping[str, Any], keep: int, run: str
    ) -> CheckpointInfo:
        """Save and prune this run's old checkpoints; raises CheckpointError (a timeout included)."""
        running = self.in_progress_s()
        if running is not None:
            raise CheckpointError(
                f"the previous checkpoint to {self.store.uri} is still in progress after {running:.0f} s; "
                f"not starting {name}"
            )
        outcome: dict[str, Any] = {}

        def work() -> None:
            try:
                info = self.store.save(name, files, metadata=metadata)
                self.store.prune(keep, run=run)
                outcome["info"] = info
            except BaseException as exc:  # handed to the waiting caller, whatever it is
                outcome["error"] = exc
            finally:
                with self._lock:
                    self._started = None

        with self._lock:
            self._started = time.monotonic()
        self._thread = threading.Thread(target=work, name=f"kuberl-checkpoint-{name}", daemon=True)
        self._thread.start()
        self._thread.join(self.deadline_s)
        if self._thread.is_alive():
            raise CheckpointTimeoutError(
                f"checkpoint {name} to {self.store.uri} did not finish within {self.deadline_s:g} s "
                "(a hung or very slow store); training continues, the save may still complete"
            )
        error = outcome.get("error")
        if error is not None:
            if isinstance(error, CheckpointError):
                raise error
            raise CheckpointError(f"checkpoint {name} to {self.store.uri} failed: {error!r}") from error
        info: CheckpointInfo = outcome["info"]
        return info
