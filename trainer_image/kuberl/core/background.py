"""Evaluation in parallel with training (spec.evaluation.parallelToTraining, RLlib's
evaluation_parallel_to_training): one evaluation at a time runs on a worker thread while the driver
trains on; a later iteration collects its statistics. Iterations never wait for it: an iteration that is
due to evaluate while the previous evaluation still runs skips launching one."""

from __future__ import annotations

from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any


class BackgroundEvaluation:
    def __init__(self) -> None:
        self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="kuberl-evaluation")
        self._running: tuple[int, Future[dict[str, Any]]] | None = None

    def launch(self, iteration: int, evaluate: Callable[[], dict[str, Any]]) -> bool:
        """Start `evaluate` (which acts with the weights of `iteration`) unless one is still running."""
        if self._running is not None and not self._running[1].done():
            return False
        self._running = (iteration, self._pool.submit(evaluate))
        return True

    def collect(self) -> dict[str, Any] | None:
        """The finished evaluation's statistics with `weights_iteration` (the training iteration whose
        weights it played with), or None while none has finished since the last collect. An exception
        in the evaluation is raised here, in the driver."""
        if self._running is None or not self._running[1].done():
            return None
        iteration, future = self._running
        self._running = None
        return {**future.result(), "weights_iteration": iteration}

    def wait(self, timeout: float | None = None) -> None:
        """Block until the running evaluation (if any) has finished; the next collect() returns it."""
        if self._running is not None:
            self._running[1].exception(timeout=timeout)

    def close(self) -> None:
        """Wait for a running evaluation (its envs close when it ends) and release the thread."""
        self._pool.shutdown(wait=True, cancel_futures=True)
