"""Asynchronous sampling for IMPALA-style training: env runners never wait for the learner.

Each runner actor keeps `requests_per_runner` sample requests queued; `poll()` returns whatever
fragments are ready (`ray.wait`) and immediately queues the next request at that runner, so the
runners sample while the learner trains. Backpressure is natural: while the driver is inside a
learner update it does not poll, and a runner idles once its queued requests are done, which
bounds the policy lag.

Every fragment is tagged with the weights version it was sampled with. Ray runs one caller's
calls to an actor in submission order, so a `set_state` sent before a `sample` is applied before
it: the tag is exact. New weights go to a runner only when its next request is queued (never a
pile of stale `set_state` calls behind running samples).

A runner actor that dies is recreated with the same index and seed stream, given the newest
weights and requests, as EnvRunnerGroup does for synchronous sampling. With `envRunners: 0` the
group's in-process runner samples synchronously on each poll.
"""

from __future__ import annotations

import dataclasses
import logging
from collections import deque
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from kuberl.core.env_runner import Rollout
from kuberl.core.runner_group import EnvRunnerGroup
from kuberl.core.sample_batch import Columns, SampleBatch

log = logging.getLogger(__name__)


@dataclass
class VersionedRollout:
    rollout: Rollout
    weights_version: int
    """The learner version whose weights the runner sampled this fragment with."""


@dataclass
class _Request:
    runner: int
    incarnation: int
    version: int


class AsyncSampler:
    """Keeps sample requests in flight at every runner of an EnvRunnerGroup and hands back fragments
    as they arrive."""

    def __init__(self, group: EnvRunnerGroup, *, requests_per_runner: int) -> None:
        self.group = group
        self.requests_per_runner = requests_per_runner
        n = len(group.actors)
        self._version = 0
        self._state: tuple[Any, dict[str, Any] | None, dict[str, Any] | None] | None = None
        self._runner_version = [0] * n
        self._incarnation = [0] * n
        self._pending: dict[Any, _Request] = {}
        self._local_version = 0

    @staticmethod
    def _ray() -> Any:
        import ray

        return ray

    # -- weights -----------------------------------------------------------------------------------
    def set_weights(
        self,
        weights: dict[str, np.ndarray],
        filter_state: dict[str, Any] | None,
        options: dict[str, Any] | None,
        *,
        version: int,
    ) -> None:
        """Make `weights` (learner `version`) the ones each runner gets with its next request."""
        self._version = version
        if self.group.local is not None:
            self.group.local.set_state(weights, filter_state, options)
            self._local_version = version
            return
        # One copy in the object store, read zero-copy by every actor.
        self._state = (self._ray().put(weights), filter_state, options)

    def mark_synced(self, version: int) -> None:
        """Every runner holds `version` now (after a blocking EnvRunnerGroup.sync); requests still in
        flight are forgotten (after a restore they were sampled by weights that no longer exist)."""
        self._version = self._local_version = version
        self._runner_version = [version] * len(self._runner_version)
        self._pending.clear()

    # -- sampling ----------------------------------------------------------------------------------
    def poll(self, *, timeout_s: float | None = None) -> list[VersionedRollout]:
        """The fragments ready now, waiting up to `timeout_s` (None: until one is) if none is."""
        if self.group.local is not None:
            return [VersionedRollout(self.group.local.sample(), self._local_version)]
        self._fill()
        ray = self._ray()
        ready, _ = ray.wait(list(self._pending), num_returns=1, timeout=timeout_s)
        if ready:  # take everything else that is done too, without waiting
            more, _ = ray.wait(list(self._pending), num_returns=len(self._pending), timeout=0)
            ready = list(dict.fromkeys([*ready, *more]))
        out: list[VersionedRollout] = []
        for ref in ready:
            req = self._pending.pop(ref, None)
            if req is None:  # a request of a runner recreated earlier in this loop
                continue
            try:
                rollout = ray.get(ref)
            except (ray.exceptions.RayActorError, ray.exceptions.ActorUnavailableError) as exc:
                if req.incarnation == self._incarnation[req.runner]:
                    log.warning("env runner %d died (%s); recreating it", req.runner + 1, type(exc).__name__)
                    self._recreate(req.runner)
                continue
            out.append(VersionedRollout(rollout, req.version))
        self._fill()
        return out

    def _fill(self) -> None:
        in_flight = [0] * len(self.group.actors)
        for req in self._pending.values():
            in_flight[req.runner] += 1
        for i, actor in enumerate(self.group.actors):
            for _ in range(self.requests_per_runner - in_flight[i]):
                if self._runner_version[i] != self._version and self._state is not None:
                    actor.set_state.remote(*self._state)
                    self._runner_version[i] = self._version
                ref = actor.sample.remote()
                self._pending[ref] = _Request(i, self._incarnation[i], self._runner_version[i])

    def _recreate(self, i: int) -> None:
        ray = self._ray()
        try:
            ray.kill(self.group.actors[i])
        except Exception:
            log.debug("killing dead actor failed", exc_info=True)
        # The group's own runner class (Ape-X's runners also compute priorities).
        remote_cls = ray.remote(num_cpus=self.group.cpus_per_runner, max_restarts=0)(self.group.runner_cls)
        actor = remote_cls.remote(dataclasses.replace(self.group.base, worker_index=i + 1))
        if self._state is not None:
            actor.set_state.remote(*self._state)
        elif self.group._state is not None:  # no broadcast yet: the group's initial sync
            actor.set_state.remote(*self.group._state)
        self._runner_version[i] = self._version
        self._incarnation[i] += 1
        self.group.actors[i] = actor
        self.group.restarts += 1
        # Forget the dead incarnation's other requests; they can only fail.
        for ref in [r for r, q in self._pending.items() if q.runner == i]:
            del self._pending[ref]

    @property
    def in_flight(self) -> int:
        return len(self._pending)


# ---------------------------------------------------------------------------------------------------
# Learner-side: the queue of arrived fragments, and the replay of recent train batches
# ---------------------------------------------------------------------------------------------------


class FragmentQueue:
    """Fragments waiting for the learner; `take()` joins `fragments_per_batch` of them (oldest first)
    along the environment axis into one time-major train batch, with each fragment's policy lag."""

    def __init__(self, fragments_per_batch: int) -> None:
        self.fragments_per_batch = fragments_per_batch
        self._items: list[VersionedRollout] = []

    def put(self, item: VersionedRollout) -> None:
        self._items.append(item)

    def ready(self) -> bool:
        return len(self._items) >= self.fragments_per_batch

    def take(self, learner_version: int) -> tuple[SampleBatch, list[int]]:
        items = self._items[: self.fragments_per_batch]
        del self._items[: self.fragments_per_batch]
        if len(items) == 1:  # own the arrays: those from Ray's object store are read-only views
            batch = SampleBatch({k: np.array(v) for k, v in items[0].rollout.batch.items()})
        else:
            batch = SampleBatch.concat_envs([i.rollout.batch for i in items])
        return batch, [learner_version - i.weights_version for i in items]

    def clear(self) -> None:
        self._items.clear()

    def __len__(self) -> int:
        return len(self._items)


class ReplaySlots:
    """IMPALA's optional learner-side replay: the last `num_slots` train batches, and how many of them
    to replay after each fresh one (`proportion` in expectation: its integer part always, the fraction
    with that probability)."""

    def __init__(self, num_slots: int, proportion: float) -> None:
        self.proportion = proportion
        self._slots: deque[SampleBatch] = deque(maxlen=max(num_slots, 1))
        self.enabled = num_slots > 0 and proportion > 0.0

    def add_and_sample(self, batch: SampleBatch, rng: np.random.Generator) -> list[SampleBatch]:
        if not self.enabled:
            return []
        self._slots.append(batch)
        n = int(self.proportion) + int(rng.random() < self.proportion - int(self.proportion))
        return [self._slots[int(rng.integers(len(self._slots)))] for _ in range(n)]

    def clear(self) -> None:
        self._slots.clear()


def sequence_minibatches(
    data: dict[str, torch.Tensor], *, minibatch_size: int | None, generator: torch.Generator
) -> list[dict[str, torch.Tensor]]:
    """Shuffled minibatches of a time-major [T, N, ...] batch that keep whole sequences: a minibatch is
    a random subset of the N environment columns (minibatch_size // T of them; None: all)."""
    T, N = data[Columns.REWARDS].shape[:2]
    cols = N if minibatch_size is None else min(N, max(1, minibatch_size // T))
    if cols == N:
        return [data]
    perm = torch.randperm(N, generator=generator).to(data[Columns.REWARDS].device)
    return [{k: v[:, perm[s : s + cols]] for k, v in data.items()} for s in range(0, N - cols + 1, cols)]
