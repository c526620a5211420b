"""The driver side of IMPALA-style training (Espeholt et al. 2018), shared by IMPALA and APPO.

Env runners keep sample requests in flight (kuberl.core.async_sampling); arriving fragments are queued,
trained on as soon as a batch is full (plus optional replay), and new weights go out every
`broadcast_interval` learner updates. The policy lag of every batch (learner version − the version the
fragment was sampled with) is reported. `VTraceLearner` is their learner's update loop (epochs of
sequence minibatches, one weights version per train batch); the losses stay in each algorithm's own file.
"""

from __future__ import annotations

import math
import time
from collections.abc import Mapping
from typing import Any, ClassVar, TypeVar

import numpy as np
import torch

from kuberl.algorithms.base import Algorithm, StepOutcome
from kuberl.core.async_sampling import AsyncSampler, FragmentQueue, ReplaySlots, sequence_minibatches
from kuberl.core.distributions import ActionDistribution
from kuberl.core.env_runner import Rollout
from kuberl.core.learner import Learner, select_device
from kuberl.core.models import action_distribution, build_model
from kuberl.core.recurrent import (
    RecurrentColumns,
    bootstrap_values,
    is_recurrent,
    runner_overrides,
    sequence_forward,
)
from kuberl.core.runner_group import EnvRunnerGroup
from kuberl.core.sample_batch import Columns, SampleBatch
from kuberl.spec.algorithms.impala import VTraceConfig

# What the losses read from a fragment; the runner also records values and distribution inputs.
LOSS_COLUMNS = (
    Columns.OBS,
    Columns.NEXT_OBS,
    Columns.ACTIONS,
    Columns.REWARDS,
    Columns.TERMINATEDS,
    Columns.TRUNCATEDS,
    Columns.ACTION_LOGP,
)
# Columns a recurrent policy records that the losses need too (initial state, previous action/reward).
RECURRENT_COLUMNS = RecurrentColumns.ALL


def with_resets(seq: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """`seq` plus the recurrent reset mask: zero the LSTM state after every episode end in the fragment
    (the fragment's first step starts from its recorded state)."""
    done = torch.logical_or(seq[Columns.TERMINATEDS].bool(), seq[Columns.TRUNCATEDS].bool())
    resets = torch.zeros_like(done)
    resets[1:] = done[:-1]
    return {**seq, RecurrentColumns.RESETS: resets}


def policy_dist_inputs(module: torch.nn.Module, seq: Mapping[str, torch.Tensor]) -> torch.Tensor:
    """Distribution inputs [T·n, …] of `module` (e.g. APPO's target network) on sequences [T, n]."""
    if is_recurrent(module):
        return sequence_forward(module, with_resets(seq))[0].flatten(0, 1)  # type: ignore[arg-type]
    T, n = seq[Columns.REWARDS].shape
    dist_in: torch.Tensor = module(seq[Columns.OBS].reshape(T * n, -1))[0]
    return dist_in


def forward_sequences(
    module: torch.nn.Module, dist: ActionDistribution, seq: Mapping[str, torch.Tensor]
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """The current network on time-major sequences [T, n]: (obs and actions flattened to [T·n, …],
    distribution inputs [T·n, …], V(s) [T, n], V(s') [T, n] without gradient, log π(a|s) [T, n]).

    Feed-forward: one forward pass covers s and s'; V(s') only bootstraps the V-trace targets.
    Recurrent: the LSTM is unrolled over the fragment from the state the runner recorded at its first
    step, and V(s') is one more LSTM step from each step's output state (kuberl.core.recurrent)."""
    T, n = seq[Columns.REWARDS].shape
    obs = seq[Columns.OBS].reshape(T * n, -1)
    if is_recurrent(module):
        dist_in_seq, values, hs, cs = sequence_forward(module, with_resets(seq))  # type: ignore[arg-type]
        dist_in = dist_in_seq.flatten(0, 1)
        with torch.no_grad():
            next_values = bootstrap_values(module, seq, hs.detach(), cs.detach())  # type: ignore[arg-type]
    else:
        next_obs = seq[Columns.NEXT_OBS].reshape(T * n, -1)
        dist_in_all, values_all = module(torch.cat([obs, next_obs]))
        dist_in = dist_in_all[: T * n]
        values = values_all[: T * n].reshape(T, n)
        next_values = values_all[T * n :].detach().reshape(T, n)
    actions = seq[Columns.ACTIONS].reshape(T * n, *seq[Columns.ACTIONS].shape[2:])
    logp = dist.logp(dist_in, actions).reshape(T, n)
    return obs, actions, dist_in, values, next_values, logp


class VTraceLearner(Learner):
    """The learner of IMPALA and APPO: `num_epochs` passes over a train batch in minibatches of whole
    sequences, each a gradient step on the subclass's `loss`; `version` counts train batches (the weights
    version the runners sample with). Stats are each term's mean over the steps."""

    def __init__(
        self, module: torch.nn.Module, dist: ActionDistribution, config: VTraceConfig, device: torch.device
    ) -> None:
        super().__init__(
            module, lr=config.lr, grad_clip=config.grad_clip, device=device, lr_schedule=config.lr_schedule
        )
        self.config = config
        self.dist = dist
        self.version = 0  # learner updates so far: the weights version runners sample with

    def loss(self, seq: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """Named terms on time-major sequences [T, n]; `total_loss` is minimised."""
        raise NotImplementedError

    def update(self, batch: SampleBatch, *, timesteps: int, generator: torch.Generator) -> dict[str, float]:
        cfg = self.config
        lr = self.update_lr(timesteps)
        data = self.to_tensors({k: batch[k] for k in (*LOSS_COLUMNS, *RECURRENT_COLUMNS) if k in batch})
        # Each step's terms and gradient norm stay on the device, summed in float64 (as Python floats
        # would be), and reach the host once per update: a host sync per term and step stalled a GPU
        # learner's queue of kernels up to ten times per gradient step.
        names: list[str] = []
        sums: torch.Tensor | None = None
        steps = 0
        for _ in range(cfg.num_epochs):
            for mb in sequence_minibatches(data, minibatch_size=cfg.minibatch_size, generator=generator):
                terms = self.loss(mb)
                norm = self.step(terms["total_loss"])
                names = [*terms, "grad_norm"]
                row = torch.stack([*(v.detach().reshape(()) for v in terms.values()), norm.reshape(())])
                row = row.to(torch.float64)
                sums = row if sums is None else sums + row
                steps += 1
        self.version += 1
        stats = {} if sums is None else {k: v / steps for k, v in zip(names, sums.tolist(), strict=True)}
        stats["lr"] = lr
        return stats

    def get_state(self) -> dict[str, Any]:
        return {**super().get_state(), "version": self.version}

    def set_state(self, state: Mapping[str, Any]) -> None:
        super().set_state(state)
        self.version = int(state.get("version", 0))


VTraceConfigT = TypeVar("VTraceConfigT", bound=VTraceConfig)


class AsyncVTraceAlgorithm(Algorithm[VTraceConfigT]):
    """Runners sample continuously; the learner trains on fragments as they arrive and broadcasts new
    weights every `broadcast_interval` updates. Subclasses name their `learner_class` (a VTraceLearner
    with the algorithm's loss)."""

    learner: VTraceLearner
    learner_class: ClassVar[type[VTraceLearner]]

    def rollout_length(self) -> int:
        return self.config.rollout_fragment_length

    def runner_overrides(self) -> dict[str, Any]:
        # s' for every step: V-trace bootstraps with the learner's current V(s') at truncations and
        # fragment ends (the runner's V(s') is the behaviour network's).
        return {"store_next_obs": True, **runner_overrides(self.config.model)}

    def setup(self) -> None:
        cfg = self.config
        res = self.spec.resources
        module = build_model(self.obs_space, self.action_space, cfg.model)
        device = select_device(res.gpus_per_learner, cpus_per_learner=res.cpus_per_learner)
        self.learner = self.learner_class(module, action_distribution(self.action_space), cfg, device)
        self.torch_gen = torch.Generator().manual_seed(self.spec.seed or 0)
        fragment_steps = cfg.rollout_fragment_length * res.envs_per_runner
        self.queue = FragmentQueue(max(1, math.ceil(cfg.train_batch_size / fragment_steps)))
        self.replay = ReplaySlots(cfg.replay_buffer_num_slots, cfg.replay_proportion)
        # Asynchronous sampling keeps requests in flight on env runners (make_runner_group's).
        assert isinstance(self.runners, EnvRunnerGroup)
        self.sampler = AsyncSampler(
            self.runners, requests_per_runner=cfg.max_requests_in_flight_per_env_runner
        )

    def training_step(self) -> StepOutcome:
        cfg = self.config
        start_steps = self.timesteps
        rollouts: list[Rollout] = []
        stats_sum: dict[str, float] = {}
        lags: list[int] = []
        trained = updates = 0
        timers = {"sample_wait": 0.0, "learn": 0.0, "broadcast": 0.0}
        while updates == 0 or self.timesteps - start_steps < cfg.min_sample_timesteps_per_iteration:
            t0 = time.perf_counter()
            for item in self.sampler.poll():
                self.record_rollout(item.rollout)
                rollouts.append(item.rollout)
                self.queue.put(item)
            timers["sample_wait"] += time.perf_counter() - t0
            while self.queue.ready():
                t1 = time.perf_counter()
                batch, batch_lags = self.queue.take(self.learner.version)
                lags += batch_lags
                for b in [batch, *self.replay.add_and_sample(batch, self.np_rng)]:
                    stats = self.learner.update(b, timesteps=self.timesteps, generator=self.torch_gen)
                    for k, v in stats.items():
                        stats_sum[k] = stats_sum.get(k, 0.0) + v
                    trained += b.env_steps
                    updates += 1
                t2 = time.perf_counter()
                if self.learner.version - self.broadcast_version >= cfg.broadcast_interval:
                    self.broadcast()
                timers["learn"] += t2 - t1
                timers["broadcast"] += time.perf_counter() - t2
        learner_stats = {k: v / updates for k, v in stats_sum.items()}
        learner_stats.update(
            policy_lag_mean=float(np.mean(lags)),
            policy_lag_max=float(np.max(lags)),
            num_updates=float(updates),
            weights_version=float(self.learner.version),
            learner_queue_size=float(len(self.queue)),
        )
        return StepOutcome(
            rollouts=rollouts, env_steps_trained=trained, learner_stats=learner_stats, timers=timers
        )

    def broadcast(self) -> None:
        """New weights for each runner's next request (non-blocking)."""
        self.sampler.set_weights(
            self.get_weights(),
            self.obs_filter.state() if self.obs_filter is not None else None,
            self.runner_options(),
            version=self.learner.version,
        )
        self.broadcast_version = self.learner.version

    def sync_weights(self) -> None:
        # Blocking sync of every runner (at start and after a restore); fragments still in flight
        # were sampled with other weights and are dropped.
        super().sync_weights()
        self.sampler.mark_synced(self.learner.version)
        self.broadcast_version = self.learner.version
        self.queue.clear()

    def set_algorithm_state(self, state: Mapping[str, Any]) -> None:
        super().set_algorithm_state(state)
        self.replay.clear()
