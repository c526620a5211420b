"""Data-parallel learners: N Ray actors, each holding a copy of the algorithm's learner, joined in a
torch.distributed process group and training through DistributedDataParallel.

The driver keeps the learner the algorithm built (on CPU) as the group's template and as the policy
module `compute_actions()` and `evaluate()` use; `LearnerGroup` takes its place as `algorithm.learner`
and offers the same calls (`update`, `get_weights`, `get_state`, `set_state`, `module`). Each
`update()` splits the batch into N equal shards (along the learner's `shard_axis`), every rank runs the
learner's own update on its shard, DDP averages the gradients inside `backward()` (never by hand), and
rank 0's weights come back for the runners. Because DDP starts every rank from rank 0's parameters
and every rank applies the same averaged gradient, the ranks stay identical, and rank 0's state is
the whole state: checkpoints have the keys of a single learner's, and restore into any `learners`.

Rendezvous: rank 0 opens a `TCPStore` on a free port of its own node (port 0: the OS picks one, so
no race between finding and binding it) and the others connect to it. Backend gloo on CPU, nccl on
GPUs (the nccl path has not run on GPU hardware yet; see docs/algorithms/ppo.md).
"""

from __future__ import annotations

import datetime
import logging
import os
import secrets
from collections.abc import Mapping
from typing import Any

import numpy as np
import ray
import torch
import torch.distributed as dist
from torch import nn

from kuberl.core.learner import Learner, select_device
from kuberl.core.models import load_numpy_weights
from kuberl.spec.common import LEARNER_RESOURCE, ResourcesSpec

log = logging.getLogger(__name__)

# A rank stuck in a collective (its peer died) gives up after this long; the driver reports the dead
# rank long before, as soon as Ray sees the actor die.
COLLECTIVE_TIMEOUT = datetime.timedelta(minutes=5)
# How long the group waits for its actors to be placed before saying which resources are missing.
PLACEMENT_TIMEOUT_S = float(os.environ.get("KUBERL_LEARNER_PLACEMENT_TIMEOUT_S", "300"))


class LearnerDiedError(RuntimeError):
    """A data-parallel learner actor died; the message names its rank."""


class LearnerUpdateError(RuntimeError):
    """A data-parallel learner raised during an update; the message names its rank, the cause is the
    rank's exception."""


def shard_bounds(n: int, world_size: int) -> list[tuple[int, int]]:
    """[start, end) of each rank's equal shard of n items; the last n mod world_size items are left
    out (fewer than one per rank), because DDP needs every rank to take the same number of steps."""
    per = n // world_size
    if per == 0:
        raise ValueError(f"a batch of {n} cannot be split over {world_size} learners")
    return [(r * per, (r + 1) * per) for r in range(world_size)]


def split_batch(
    batch: Mapping[str, np.ndarray], world_size: int, *, axis: int
) -> list[dict[str, np.ndarray]]:
    """Contiguous equal shards of every column along `axis` (samples, or whole sequences)."""
    n = next(iter(batch.values())).shape[axis]
    index = [slice(None)] * (axis + 1)
    shards = []
    for start, end in shard_bounds(n, world_size):
        index[axis] = slice(start, end)
        shards.append({k: np.ascontiguousarray(v[tuple(index)]) for k, v in batch.items()})
    return shards


def rank_seeds(generator: torch.Generator, world_size: int) -> list[int]:
    """One minibatch-shuffle seed per rank, drawn from the driver's generator: the driver's generator is
    the only random state to checkpoint (the key a single learner's checkpoint has), and a run is
    deterministic given the job's seed."""
    return [int(s) for s in torch.randint(0, 2**62, (world_size,), generator=generator)]


def average_stats(stats: list[Mapping[str, Any]]) -> dict[str, float]:
    """The mean of each statistic over the ranks (each rank's is the mean over its own minibatches);
    a statistic may be a float or a one-element tensor."""
    return {k: float(np.mean([float(s[k]) for s in stats])) for k in stats[0]}


# What a learner's `update` returns: its statistics, or (statistics, one value per sample of the batch),
# as a Q learner returns its |TD errors| for the replay priorities.
UpdateResult = Mapping[str, Any] | tuple[Mapping[str, Any], np.ndarray]


def combine_results(results: list[UpdateResult]) -> dict[str, float] | tuple[dict[str, float], np.ndarray]:
    """The group's result from the ranks' (in rank order): statistics averaged; per-sample values
    concatenated in rank order, which is the batch's order (each rank took a contiguous shard)."""
    first = results[0]
    if isinstance(first, tuple):
        pairs = [r for r in results if isinstance(r, tuple)]
        return average_stats([stats for stats, _ in pairs]), np.concatenate([np.asarray(v) for _, v in pairs])
    return average_stats([r for r in results if not isinstance(r, tuple)])


def _cpu(state: Any) -> Any:
    """A state with every tensor on CPU, so a driver without a GPU can save and load it."""
    if isinstance(state, torch.Tensor):
        return state.detach().cpu()
    if isinstance(state, dict):
        return {k: _cpu(v) for k, v in state.items()}
    if isinstance(state, list | tuple):
        return type(state)(_cpu(v) for v in state)
    return state


class LearnerWorker:
    """One rank (a Ray actor): a copy of the driver's learner, moved to this process's device."""

    def __init__(
        self, learner: Learner, *, rank: int, world_size: int, gpus: float, cpus: float, seed: int
    ) -> None:
        self.rank = rank
        self.world_size = world_size
        # What a learner draws from torch's global generator (a noisy net's noise before each update)
        # would otherwise come from whatever state this actor's process has: one seed on every rank, so
        # the ranks draw the same noise (the group's step is one learner's step under one noise sample)
        # and a seeded job draws the same noise on every run.
        torch.manual_seed(seed)
        self.learner = learner
        self.learner.to_device(select_device(gpus, cpus_per_learner=cpus))
        self.store: dist.TCPStore | None = None

    def open_store(self) -> tuple[str, int]:
        """Rank 0: the rendezvous store on a free port of this node; returns (address, port)."""
        host = ray.util.get_node_ip_address()
        self.store = dist.TCPStore(
            host, 0, self.world_size, is_master=True, timeout=COLLECTIVE_TIMEOUT, wait_for_workers=False
        )
        return host, self.store.port

    def join(self, host: str, port: int) -> None:
        """Join the process group (every rank at once) and wrap the module in DDP."""
        if self.store is None:
            self.store = dist.TCPStore(
                host, port, self.world_size, is_master=False, timeout=COLLECTIVE_TIMEOUT
            )
        backend = "nccl" if self.learner.device.type == "cuda" else "gloo"
        dist.init_process_group(
            backend, store=self.store, rank=self.rank, world_size=self.world_size, timeout=COLLECTIVE_TIMEOUT
        )
        self.learner.distribute(self.world_size)

    def update(
        self, shard: dict[str, np.ndarray], seed: int | None, kwargs: dict[str, Any]
    ) -> tuple[UpdateResult, dict[str, np.ndarray] | None]:
        """The learner's update on this rank's shard; rank 0 also returns the new weights."""
        if seed is not None:
            kwargs = {**kwargs, "generator": torch.Generator().manual_seed(seed)}
        # Copies: arrays from Ray's object store are read-only, which torch warns about when wrapping them.
        shard = {k: np.array(v) for k, v in shard.items()}
        stats = self.learner.update(shard, **kwargs)  # type: ignore[attr-defined]
        return stats, (self.learner.get_weights() if self.rank == 0 else None)

    def get_weights(self) -> dict[str, np.ndarray]:
        return self.learner.get_weights()

    def call(self, method: str, args: tuple[Any, ...]) -> Any:
        """The learner's `method(*args)` on this rank (LearnerGroup.update_lr, update_target)."""
        return getattr(self.learner, method)(*args)

    def get_state(self) -> dict[str, Any]:
        return _cpu(self.learner.get_state())

    def set_state(self, state: Mapping[str, Any]) -> None:
        self.learner.set_state(state)

    def ready(self) -> int:
        return self.rank


class LearnerGroup:
    """N data-parallel learner actors standing in for one learner (see the module docstring)."""

    def __init__(self, learner: Learner, *, resources: ResourcesSpec, seed: int | None = None) -> None:
        """`seed`: the job's seed, for every rank's global torch generator (an unseeded job: a random one)."""
        self.local = learner  # the template, and the driver's copy of the policy
        self.world_size = resources.learners
        self.shard_axis = learner.shard_axis
        gpus, cpus = resources.gpus_per_learner, resources.cpus_per_learner
        # Any: Ray's actor handles are typed per method only through its mypy plugin, which kuberl does not use.
        actor_cls: Any = ray.remote(LearnerWorker)
        # The operator's learner pods advertise LEARNER_RESOURCE; on a laptop no node has it and the
        # learners are placed by CPUs and GPUs alone.
        ray_resources = {LEARNER_RESOURCE: 1.0} if _cluster_has(LEARNER_RESOURCE) else None
        rank_seed = seed if seed is not None else secrets.randbits(63)
        self.actors: list[Any] = [
            actor_cls.options(num_cpus=cpus, num_gpus=gpus, resources=ray_resources).remote(
                learner, rank=rank, world_size=self.world_size, gpus=gpus, cpus=cpus, seed=rank_seed
            )
            for rank in range(self.world_size)
        ]
        try:
            self._wait_placed(gpus=gpus, cpus=cpus)
            host, port = self._get([self.actors[0].open_store.remote()])[0]
            self._get([a.join.remote(host, port) for a in self.actors])
        except BaseException:
            self.shutdown()
            raise
        log.info("%d data-parallel learners joined (rendezvous %s:%d)", self.world_size, host, port)

    def _wait_placed(self, *, gpus: float, cpus: float) -> None:
        refs = [a.ready.remote() for a in self.actors]
        ready, _ = ray.wait(refs, num_returns=len(refs), timeout=PLACEMENT_TIMEOUT_S)
        if len(ready) < len(refs):
            raise RuntimeError(
                f"resources.learners: only {len(ready)} of {self.world_size} learner actors could be placed within "
                f"{PLACEMENT_TIMEOUT_S:.0f}s; each needs {cpus:g} CPU and {gpus:g} GPU "
                f"(cluster resources: {ray.cluster_resources()})"
            )
        self._get(refs)

    def _get(self, refs: list[ray.ObjectRef], *, collective: bool = False) -> list[Any]:
        """Results in rank order. The futures are waited on one at a time, as they finish, so the first
        rank whose actor died raises at once (Ray fails a dead actor's pending calls as soon as it sees
        the process gone), naming the rank, instead of leaving the caller waiting on the others, which
        sit in DDP's all-reduce for the dead one until the collective timeout. `collective`: the calls
        run collectives (update), so a rank that *raises* also leaves the others blocked; the group is
        stopped then too."""
        rank_of = {ref: i for i, ref in enumerate(refs)}
        pending = list(refs)
        while pending:
            ready, pending = ray.wait(pending, num_returns=1)
            try:
                ray.get(ready[0])
            except ray.exceptions.RayActorError as e:
                rank = rank_of[ready[0]]
                self.shutdown()
                raise LearnerDiedError(
                    f"data-parallel learner rank {rank} of {self.world_size} died: {e}; "
                    "the remaining learners were stopped"
                ) from e
            except ray.exceptions.RayTaskError as e:
                if not collective:
                    raise
                rank = rank_of[ready[0]]
                self.shutdown()
                raise LearnerUpdateError(
                    f"data-parallel learner rank {rank} of {self.world_size} failed during an update "
                    f"({type(e.cause).__name__}: {e.cause}); the remaining learners, blocked in DDP's "
                    "collectives waiting for it, were stopped"
                ) from e.cause
        return ray.get(refs)

    # -- the Learner calls algorithms make ----------------------------------------------------------
    @property
    def module(self) -> nn.Module:
        return self.local.module

    @property
    def lr(self) -> float:
        return self.local.lr

    def update(
        self, batch: Mapping[str, np.ndarray], **kwargs: Any
    ) -> dict[str, float] | tuple[dict[str, float], np.ndarray]:
        """The learner's `update(batch, **kwargs)`, data-parallel. A `generator` argument (the
        minibatch shuffle) becomes one seed per rank drawn from it. Statistics come back averaged over
        the ranks; a learner that also returns one value per sample (a Q learner's |TD errors|) gets
        them back for the whole batch, in its order."""
        generator = kwargs.pop("generator", None)
        seeds: list[int | None] = (
            list(rank_seeds(generator, self.world_size))
            if generator is not None
            else [None] * self.world_size
        )
        shards = split_batch(batch, self.world_size, axis=self.shard_axis)
        results = self._get(
            [a.update.remote(s, seed, kwargs) for a, s, seed in zip(self.actors, shards, seeds, strict=True)],
            collective=True,
        )
        weights = results[0][1]
        assert weights is not None
        load_numpy_weights(self.local.module, weights)
        combined = combine_results([out for out, _ in results])
        stats = combined[0] if isinstance(combined, tuple) else combined
        self.local.lr = stats.get("lr", self.local.lr)
        return combined

    def update_lr(self, timesteps: int) -> float:
        """The learning-rate schedule's value at `timesteps`, set on every rank (and the driver's copy)."""
        self._get([a.call.remote("update_lr", (timesteps,)) for a in self.actors])
        return self.local.update_lr(timesteps)

    def update_target(self) -> None:
        """A learner with a target network it updates between gradient steps (the Q learners): every
        rank updates its own from its online network, which DDP keeps identical across ranks."""
        self._get([a.call.remote("update_target", ()) for a in self.actors])

    def get_weights(self) -> dict[str, np.ndarray]:
        return self.local.get_weights()

    def get_state(self) -> dict[str, Any]:
        """Rank 0's learner state: the same keys as a single learner's."""
        state: dict[str, Any] = self._get([self.actors[0].get_state.remote()])[0]
        return state

    def set_state(self, state: Mapping[str, Any]) -> None:
        ref = ray.put(dict(state))
        self._get([a.set_state.remote(ref) for a in self.actors])
        self.local.set_state(state)

    def shutdown(self) -> None:
        for actor in self.actors:
            ray.kill(actor)
        self.actors = []


def _cluster_has(resource: str) -> bool:
    return ray.cluster_resources().get(resource, 0.0) > 0.0
