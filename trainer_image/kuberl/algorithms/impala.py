"""IMPALA: Importance Weighted Actor-Learner Architecture (Espeholt et al. 2018,
https://arxiv.org/abs/1802.01561).

Reads top to bottom like the paper:
  config  → `IMPALAConfig` (kuberl.spec.algorithms.impala; every field documented there, RLlib names)
  network → `ActorCritic` (kuberl.core.models): MLP policy and value heads; with `model.use_lstm`
            a `RecurrentActorCritic` (kuberl.core.recurrent) unrolled over each fragment
  loss    → `impala_loss`: V-trace policy gradient + value regression to v_s − entropy bonus
  step    → `IMPALA.training_step`: env runners sample continuously (kuberl.core.async_sampling);
            the learner trains on fragments as they arrive and broadcasts weights every
            `broadcast_interval` updates. The lag between the learner's version and the version a
            fragment was sampled with is reported as `policy_lag_mean` / `policy_lag_max`.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch

from kuberl.core.async_algorithm import RECURRENT_COLUMNS, AsyncVTraceAlgorithm, forward_sequences
from kuberl.core.async_sampling import sequence_minibatches
from kuberl.core.distributions import ActionDistribution
from kuberl.core.learner import Learner
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
    _, _, dist_in, values, next_values, logp = forward_sequences(module, dist, seq)

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
        data = self.to_tensors({k: batch[k] for k in (*LOSS_COLUMNS, *RECURRENT_COLUMNS) if k in batch})
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


class IMPALA(AsyncVTraceAlgorithm):
    """Asynchronous sampling, queueing and broadcasting: kuberl.core.async_algorithm."""

    name = "IMPALA"
    config: IMPALAConfig

    def make_learner(
        self, module: torch.nn.Module, dist: ActionDistribution, device: torch.device
    ) -> IMPALALearner:
        return IMPALALearner(module, dist, self.config, device)
