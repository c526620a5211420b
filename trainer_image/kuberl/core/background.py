"""Evaluation in parallel with training (spec.evaluation.parallelToTraining, RLlib's
evaluation_parallel_to_training): one evaluation at a time runs while the driver trains on, on the
evaluation actors (evaluation.numEnvRunners) or else on a worker thread; a later iteration collects its
statistics. Iterations never wait for it: an iteration that is due to evaluate while the previous
evaluation still runs skips launching one."""

from __future__ import annotations

from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any, Protocol


class Pending(Protocol):
    """An evaluation under way (a thread's future, or kuberl.core.runner_group.ActorEvaluation)."""

    def done(self) -> bool: ...

    def wait(self, timeout: float | None = None) -> None: ...

    def result(self) -> dict[str, Any]:
        """Its statistics; an exception of the evaluation is raised here, in the driver."""


class ThreadEvaluation:
    def __init__(self, future: Future[dict[str, Any]]) -> None:
        self.future = future

    def done(self) -> bool:
        return self.future.done()

    def wait(self, timeout: float | None = None) -> None:
        self.future.exception(timeout=timeout)

    def result(self) -> dict[str, Any]:
        return self.future.result()


class BackgroundEvaluation:
    def __init__(self) -> None:
        self._pool: ThreadPoolExecutor | None = None
        self._running: tuple[int, Pending] | None = None

    def launch(self, iteration: int, evaluate: Callable[[], dict[str, Any]]) -> bool:
        """Start `evaluate` (which acts with the weights of `iteration`) on the worker thread unless an
        evaluation is still running."""

        def on_thread() -> Pending:
            if self._pool is None:
                self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="kuberl-evaluation")
            return ThreadEvaluation(self._pool.submit(evaluate))

        return self.launch_with(iteration, on_thread)

    def launch_with(self, iteration: int, start: Callable[[], Pending]) -> bool:
        """Call `start` (which starts an evaluation with the weights of `iteration`, e.g. on the evaluation
        actors, and returns at once) unless an evaluation is still running."""
        if self._running is not None and not self._running[1].done():
            return False
        self._running = (iteration, start())
        return True

    def collect(self) -> dict[str, Any] | None:
        """The finished evaluation's statistics with `weights_iteration` (the training iteration whose
        weights it played with), or None while none has finished since the last collect. An exception
        in the evaluation is raised here, in the driver."""
        if self._running is None or not self._running[1].done():
            return None
        iteration, pending = self._running
        self._running = None
        return {**pending.result(), "weights_iteration": iteration}

    def wait(self, timeout: float | None = None) -> None:
        """Block until the running evaluation (if any) has finished; the next collect() returns it."""
        if self._running is not None:
            self._running[1].wait(timeout=timeout)

    def close(self) -> None:
        """Wait for an evaluation running on the thread (its envs close when it ends) and release the
        thread. One on the evaluation actors ends with them (the algorithm's stop)."""
        if self._pool is not None:
            self._pool.shutdown(wait=True, cancel_futures=True)
