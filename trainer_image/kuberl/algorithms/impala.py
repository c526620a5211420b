"""IMPALA: Importance Weighted Actor-Learner Architecture (Espeholt et al. 2018,
https://arxiv.org/abs/1802.01561).

Reads top to bottom like the paper:
  config  → `IMPALAConfig` (kuberl.spec.algorithms.impala; every field documented there, RLlib names)
  network → `ActorCritic` (kuberl.core.models): MLP policy and value heads
  loss    → `impala_loss`: V-trace policy gradient + value regression to v_s − entropy bonus
  step    → `IMPALA.training_step`: env runners sample continuously (kuberl.core.async_sampling);
            the learner trains on fragments as they arrive and broadcasts weights every
            `broadcast_interval` updates. The lag between the learner's version and the version a
            fragment was sampled with is reported as `policy_lag_mean` / `policy_lag_max`.
"""

from __future__ import annotations

import math
import time
from collections.abc import Mapping
from typing import Any

import numpy as np
import torch

from kuberl.algorithm import Algorithm, StepOutcome
from kuberl.core.async_sampling import AsyncSampler, FragmentQueue, ReplaySlots, sequence_minibatches
from kuberl.core.distributions import ActionDistribution
from kuberl.core.env_runner import Rollout
from kuberl.core.learner import Learner, select_device
from kuberl.core.models import action_distribution, build_model
from kuberl.core.sample_batch import Columns, SampleBatch
from kuberl.core.vtrace import vtrace
from kuberl.spec.algorithms.impala import IMPALAConfig

# What the loss reads from a fragment; the runner also records values and distribution inputs.
LOSS_COLUMNS = (
    Columns.OBS,
    Columns.NEXT_OBS,
    Columns.ACTIONS,
    Columns.REWARDS,
    Columns.TERMINATEDS,
    Columns.TRUNCATEDS,
    Columns.ACTION_LOGP,
)

# ---------------------------------------------------------------------------------------------------
# Loss
# ---------------------------------------------------------------------------------------------------


def impala_loss(
    module: torch.nn.Module,
    dist: ActionDistribution,
    seq: Mapping[str, torch.Tensor],
    *,
    config: IMPALAConfig,
) -> dict[str, torch.Tensor]:
    """The IMPALA objective on time-major sequences [T, n], as named terms (`total_loss` is minimised)."""
    T, n = seq[Columns.REWARDS].shape
    obs = seq[Columns.OBS].reshape(T * n, -1)
    next_obs = seq[Columns.NEXT_OBS].reshape(T * n, -1)
    # One forward pass over s and s'; V(s') only bootstraps the targets, so it carries no gradient.
    dist_in_all, values_all = module(torch.cat([obs, next_obs]))
    dist_in = dist_in_all[: T * n]
    values = values_all[: T * n].reshape(T, n)
    next_values = values_all[T * n :].detach().reshape(T, n)
    actions = seq[Columns.ACTIONS].reshape(T * n, *seq[Columns.ACTIONS].shape[2:])
    logp = dist.logp(dist_in, actions).reshape(T, n)

    vt = vtrace(
        seq[Columns.ACTION_LOGP],
        logp.detach(),
        seq[Columns.REWARDS],
        values.detach(),
        next_values,
        seq[Columns.TERMINATEDS],
        seq[Columns.TRUNCATEDS],
        gamma=config.gamma,
        clip_rho_threshold=config.vtrace_clip_rho_threshold,
        clip_pg_rho_threshold=config.vtrace_clip_pg_rho_threshold,
    )
    policy_loss = -(logp * vt.pg_advantages).mean()
    vf_loss = 0.5 * (values - vt.vs).pow(2).mean()
    entropy = dist.entropy(dist_in).mean()
    total = policy_loss + config.vf_loss_coeff * vf_loss - config.entropy_coeff * entropy
    return {
        "total_loss": total,
        "policy_loss": policy_loss,
        "vf_loss": vf_loss,
        "entropy": entropy,
        "mean_rho": vt.rhos.mean(),
        "vtrace_target_mean": vt.vs.mean(),
    }


# ---------------------------------------------------------------------------------------------------
# Learner: one (or `num_epochs`) pass(es) over a train batch, in minibatches of whole sequences
# ---------------------------------------------------------------------------------------------------


class IMPALALearner(Learner):
    def __init__(
        self, module: torch.nn.Module, dist: ActionDistribution, config: IMPALAConfig, device: torch.device
    ) -> None:
        super().__init__(
            module, lr=config.lr, grad_clip=config.grad_clip, device=device, lr_schedule=config.lr_schedule
        )
        self.config = config
        self.dist = dist
        self.version = 0  # learner updates so far: the weights version runners sample with

    def update(self, batch: SampleBatch, *, timesteps: int, generator: torch.Generator) -> dict[str, float]:
        cfg = self.config
        lr = self.update_lr(timesteps)
        data = self.to_tensors({k: batch[k] for k in LOSS_COLUMNS})
        sums: dict[str, float] = {}
        steps = 0
        grad_norm = 0.0
        for _ in range(cfg.num_epochs):
            for mb in sequence_minibatches(data, minibatch_size=cfg.minibatch_size, generator=generator):
                terms = impala_loss(self.module, self.dist, mb, config=cfg)
                grad_norm += self.apply_gradients(terms["total_loss"])
                for k, v in terms.items():
                    sums[k] = sums.get(k, 0.0) + float(v.detach())
                steps += 1
        self.version += 1
        stats = {k: v / max(steps, 1) for k, v in sums.items()}
        stats["grad_norm"] = grad_norm / max(steps, 1)
        stats["lr"] = lr
        return stats

    def get_state(self) -> dict[str, Any]:
        return {**super().get_state(), "version": self.version}

    def set_state(self, state: Mapping[str, Any]) -> None:
        super().set_state(state)
        self.version = int(state.get("version", 0))


# ---------------------------------------------------------------------------------------------------
# Training step: poll the runners → train on each full batch → broadcast every `broadcast_interval`
# ---------------------------------------------------------------------------------------------------


class IMPALA(Algorithm):
    name = "IMPALA"
    config: IMPALAConfig

    def rollout_length(self) -> int:
        return self.config.rollout_fragment_length

    def runner_overrides(self) -> dict[str, Any]:
        # s' for every step: V-trace bootstraps with the learner's current V(s') at truncations and
        # fragment ends (the runner's V(s') is the behaviour network's).
        return {"store_next_obs": True}

    def setup(self) -> None:
        cfg = self.config
        res = self.spec.resources
        module = build_model(self.obs_space, self.action_space, cfg.model)
        device = select_device(res.gpus_per_learner, cpus_per_learner=res.cpus_per_learner)
        self.learner = IMPALALearner(module, action_distribution(self.action_space), cfg, device)
        self.torch_gen = torch.Generator().manual_seed(self.spec.seed or 0)
        fragment_steps = cfg.rollout_fragment_length * res.envs_per_runner
        self.queue = FragmentQueue(max(1, math.ceil(cfg.train_batch_size / fragment_steps)))
        self.replay = ReplaySlots(cfg.replay_buffer_num_slots, cfg.replay_proportion)
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
                self._record(item.rollout)
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

    def _record(self, r: Rollout) -> None:
        """Episode and step bookkeeping for one arrived fragment (Algorithm.sample() does this for
        synchronous algorithms)."""
        self.returns.extend(r.episode_returns)
        self.lengths.extend(r.episode_lengths)
        self.episodes_total += len(r.episode_returns)
        self.env_restarts += r.env_restarts
        self.timesteps += r.batch.env_steps
        if self.obs_filter is not None and r.filter_delta is not None:
            self.obs_filter.merge(r.filter_delta)

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

    def policy_module(self) -> torch.nn.Module:
        return self.learner.module

    def get_weights(self) -> dict[str, np.ndarray]:
        return self.learner.get_weights()

    def algorithm_state(self) -> dict[str, Any]:
        return {"learner": self.learner.get_state(), "torch_gen": self.torch_gen.get_state()}

    def set_algorithm_state(self, state: Mapping[str, Any]) -> None:
        self.learner.set_state(state["learner"])
        self.torch_gen.set_state(state["torch_gen"])
        self.replay.clear()
