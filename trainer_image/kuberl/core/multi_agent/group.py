"""A set of MultiAgentEnvRunners: in the driver (envRunners: 0) or as Ray actors, recreated when they die.

The same recovery contract as kuberl.core.runner_group.EnvRunnerGroup: a dead actor is recreated with
its index and seed stream, given the last state, and asked again.
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Callable
from typing import Any

from kuberl.core.multi_agent.runner import MultiAgentEnvRunner, MultiAgentRunnerConfig, MultiAgentSample

log = logging.getLogger(__name__)


class MultiAgentRunnerGroup:
    def __init__(
        self, base: MultiAgentRunnerConfig, *, num_runners: int, cpus_per_runner: float = 1.0
    ) -> None:
        self.base = base
        self.cpus_per_runner = cpus_per_runner
        self.restarts = 0
        self._state: dict[str, Any] | None = None
        self.local: MultiAgentEnvRunner | None = None
        self.actors: list[Any] = []
        if num_runners == 0:
            self.local = MultiAgentEnvRunner(base)
        else:
            self.actors = [self._make_actor(i + 1) for i in range(num_runners)]
            self._ray().get([a.ping.remote() for a in self.actors])

    @staticmethod
    def _ray() -> Any:
        import ray

        return ray

    @property
    def num_envs(self) -> int:
        return self.base.num_envs * max(len(self.actors), 1)

    @property
    def num_healthy(self) -> int:
        return 1 if self.local is not None else len(self.actors)

    def _make_actor(self, index: int) -> Any:
        remote_cls = self._ray().remote(num_cpus=self.cpus_per_runner, max_restarts=0)(MultiAgentEnvRunner)
        return remote_cls.remote(dataclasses.replace(self.base, worker_index=index))

    def sync(self, state: dict[str, Any]) -> None:
        self._state = state
        if self.local is not None:
            self.local.set_state(state)
            return
        ref = self._ray().put(state)
        self._wait_all(
            [a.set_state.remote(ref) for a in self.actors], lambda i: self.actors[i].set_state.remote(ref)
        )

    def sample(self, num_steps: int) -> list[MultiAgentSample]:
        if self.local is not None:
            return [self.local.sample(num_steps)]
        futures = [a.sample.remote(num_steps) for a in self.actors]
        results: list[MultiAgentSample] = self._wait_all(
            futures, lambda i: self.actors[i].sample.remote(num_steps)
        )
        return results

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
                    log.warning(
                        "multi-agent env runner %d died (%s); recreating it", i + 1, type(exc).__name__
                    )
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
            ray.get(actor.set_state.remote(self._state))
        self.actors[i] = actor

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
