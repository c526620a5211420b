"""Groups of runner actors: in the driver (envRunners: 0) or as Ray actors, recreated when they die."""

from __future__ import annotations

import dataclasses
import logging
import time
from collections.abc import Callable
from typing import Any, ClassVar, Protocol

import gymnasium as gym
import numpy as np

from kuberl.core.env_runner import EnvRunner, Rollout, RunnerConfig
from kuberl.core.evaluation import EpisodeStats, EvaluationRunner, shares
from kuberl.results import TrainResult

log = logging.getLogger(__name__)


class RunnerGroup(Protocol):
    """Where an Algorithm's experience comes from: env runners (EnvRunnerGroup), the policy server of
    external simulators (kuberl.external) or one policy's share of multi-agent runners
    (kuberl.multi_agent). kuberl.build picks one; the Algorithm only calls these."""

    restarts: int

    @property
    def num_healthy(self) -> int: ...

    def spaces(self) -> tuple[gym.Space[Any], gym.Space[Any]]: ...

    def sync(
        self,
        weights: dict[str, np.ndarray],
        filter_state: dict[str, Any] | None,
        options: dict[str, Any] | None = None,
    ) -> None:
        """The policy's weights (and observation-filter state, runner-policy options) for the next samples."""

    def sample(self) -> list[Rollout]: ...

    def report(self) -> TrainResult:
        """Entries this group adds to every result dict (the policy server's counters); usually none."""

    def interrupt(self) -> None:
        """A stop signal arrived: a sample() that waits for experience returns now (InterruptedError)."""

    def stop(self) -> None: ...


class RunnerActorGroup:
    """One local runner, or `num_runners` Ray actors of `runner_cls`, with the recovery contract every
    group shares: an actor that dies (node loss, OOM kill, crash) is recreated with the same index and
    seed stream, given the last state sent to the group, and asked again, so one lost process costs one
    request's time instead of the run. Subclasses add what they ask their runners (sync, sample, …)."""

    runner_cls: ClassVar[type]
    kind: ClassVar[str] = "env runner"  # in log messages

    def __init__(self, base: Any, *, num_runners: int, cpus_per_runner: float = 1.0) -> None:
        self.base = base
        self.num_runners = num_runners
        self.cpus_per_runner = cpus_per_runner
        self.restarts = 0
        # The set_state(...) arguments a recreated runner starts from.
        self._state: tuple[Any, ...] | None = None
        self.local: Any = None
        self.actors: list[Any] = []
        if num_runners == 0:
            self.local = self.runner_cls(base)
        else:
            self.actors = [self._make_actor(i + 1) for i in range(num_runners)]
            self._ray().get([a.ping.remote() for a in self.actors])

    @staticmethod
    def _ray() -> Any:
        import ray

        return ray

    def _config(self, index: int) -> Any:
        return dataclasses.replace(self.base, worker_index=index)

    def _make_actor(self, index: int) -> Any:
        remote_cls = self._ray().remote(num_cpus=self.cpus_per_runner, max_restarts=0)(self.runner_cls)
        return remote_cls.remote(self._config(index))

    def _wait_all(self, futures: list[Any], retry: Callable[[int], Any]) -> list[Any]:
        ray = self._ray()
        results: list[Any] = [None] * len(futures)
        for i, fut in enumerate(futures):
            for attempt in range(3):
                try:
                    results[i] = ray.get(fut)
                    break
                except (ray.exceptions.RayActorError, ray.exceptions.ActorUnavailableError) as exc:
                    if attempt == 2:
                        raise
                    log.warning("%s %d died (%s); recreating it", self.kind, i + 1, type(exc).__name__)
                    self._replace(i)
                    fut = retry(i)
        return results

    def _replace(self, i: int) -> None:
        ray = self._ray()
        try:
            ray.kill(self.actors[i])
        except Exception:
            log.debug("killing dead actor failed", exc_info=True)
        self.restarts += 1
        actor = self._make_actor(i + 1)
        if self._state is not None:
            ray.get(actor.set_state.remote(*self._state))
        self.actors[i] = actor

    @property
    def num_healthy(self) -> int:
        return 1 if self.local is not None else len(self.actors)

    def report(self) -> TrainResult:
        return {}

    def interrupt(self) -> None:
        """Env runners sample in bounded time: nothing to interrupt."""

    def kill_runner_for_test(self, i: int) -> None:
        """Kill one actor abruptly (fault-tolerance tests and chaos drills)."""
        self._ray().kill(self.actors[i], no_restart=True)
        time.sleep(0.1)

    def stop(self) -> None:
        if self.local is not None:
            self.local.close()
            return
        ray = self._ray()
        for a in self.actors:
            try:
                ray.kill(a)
            except Exception:
                log.debug("stopping actor failed", exc_info=True)
        self.actors = []


class EnvRunnerGroup(RunnerActorGroup):
    """Samples from every EnvRunner in parallel."""

    runner_cls = EnvRunner
    base: RunnerConfig
    local: EnvRunner | None

    def spaces(self) -> tuple[gym.Space[Any], gym.Space[Any]]:
        if self.local is not None:
            return self.local.spaces()
        return self._ray().get(self.actors[0].spaces.remote())

    def sync(
        self,
        weights: dict[str, np.ndarray],
        filter_state: dict[str, Any] | None,
        options: dict[str, Any] | None = None,
    ) -> None:
        self._state = (weights, filter_state, options)
        if self.local is not None:
            self.local.set_state(weights, filter_state, options)
            return
        ray = self._ray()
        ref = ray.put(weights)  # one copy in the object store, read zero-copy by every actor
        futures = [a.set_state.remote(ref, filter_state, options) for a in self.actors]
        self._wait_all(futures, lambda i: self.actors[i].set_state.remote(ref, filter_state, options))

    def sample(self) -> list[Rollout]:
        if self.local is not None:
            return [self.local.sample()]
        futures = [a.sample.remote() for a in self.actors]
        return self._wait_all(futures, lambda i: self.actors[i].sample.remote())


class EvaluationRunnerGroup(RunnerActorGroup):
    """evaluation.numEnvRunners Ray actors (EvaluationRunner), started once and kept for the run, with
    the recovery every runner group has: an actor that dies is recreated with the weights of the
    evaluation it was playing and asked again."""

    runner_cls = EvaluationRunner
    kind = "evaluation runner"

    def start(
        self,
        weights: dict[str, np.ndarray],
        filter_state: dict[str, Any] | None,
        options: dict[str, Any] | None,
        *,
        episodes: int | None,
        timesteps: int | None,
        explore: bool,
    ) -> ActorEvaluation:
        """Send the weights (filter state, policy options) and start every actor's share of the
        evaluation; returns at once. Each actor runs its calls in order, so it plays with these weights."""
        self._state = (weights, filter_state, options)
        ray = self._ray()
        ref = ray.put(weights)
        for actor in self.actors:
            actor.set_state.remote(ref, filter_state, options)
        # Episodes, or else timesteps, split over the actors (fewer actors when there are fewer units).
        split = shares(episodes, self.num_runners) if episodes is not None else None
        steps = shares(timesteps, self.num_runners) if split is None and timesteps is not None else None
        count = len(split or steps or [])

        def ask(i: int) -> Any:
            return self.actors[i].evaluate.remote(
                split[i] if split else None, steps[i] if steps else timesteps, explore
            )

        return ActorEvaluation(self, [ask(i) for i in range(count)], ask)

    def wait_all(self, futures: list[Any], retry: Callable[[int], Any]) -> list[Any]:
        return self._wait_all(futures, retry)


class ActorEvaluation:
    """An evaluation running on the evaluation actors (kuberl.core.background.Pending)."""

    def __init__(self, group: EvaluationRunnerGroup, futures: list[Any], ask: Callable[[int], Any]) -> None:
        self.group = group
        self.futures = futures
        self.ask = ask

    def done(self) -> bool:
        ready, _ = self.group._ray().wait(self.futures, num_returns=len(self.futures), timeout=0)
        return len(ready) == len(self.futures)

    def wait(self, timeout: float | None = None) -> None:
        self.group._ray().wait(self.futures, num_returns=len(self.futures), timeout=timeout)

    def result(self) -> dict[str, Any]:
        """The merged statistics (the keys of Algorithm.evaluate) and `num_env_runners`: how many actors
        played. Blocks until every share is done; a dead actor is recreated and asked again."""
        parts = self.group.wait_all(self.futures, self.ask)
        stats = EpisodeStats()
        for part in parts:
            stats.merge(part["stats"])
        pids = sorted({part["pid"] for part in parts})
        log.debug("evaluation played by %d actors, pids %s", len(parts), pids)
        return {**stats.summary(), "num_env_runners": len(parts)}
