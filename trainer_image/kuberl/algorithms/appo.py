"""APPO: asynchronous PPO (RLlib's APPO; IMPALA, Espeholt et al. 2018, https://arxiv.org/abs/1802.01561,
with PPO's clipped surrogate, Schulman et al. 2017, https://arxiv.org/abs/1707.06347).

Reads top to bottom:
  config  → `APPOConfig` (kuberl.spec.algorithms.appo; every field documented there, RLlib names)
  network → `ActorCritic` (kuberl.core.models), plus a target copy: the "old" policy π_target
            (with `model.use_lstm` a `RecurrentActorCritic`, both unrolled over each fragment)
  loss    → `appo_loss`: V-trace (μ → π_target) advantages in PPO's clipped surrogate of π / π_target,
            value regression to v_s, entropy bonus, optional adaptive KL(π_target ‖ π)
  step    → `APPO.training_step`: env runners sample continuously (kuberl.core.async_sampling); the
            learner trains on fragments as they arrive, refreshes π_target every
            `target_network_update_freq` train batches and broadcasts weights every `broadcast_interval`.
            The policy lag is reported as `policy_lag_mean` / `policy_lag_max`.

As RLlib does, the ratio is taken against the target network rather than the behaviour policy μ: the
behaviour policy of an asynchronous fragment is several versions old, and clipping π/μ would freeze
learning on stale data. Written as RLlib writes it, π/π_target = clip(μ/π_target, 0, 2) · π/μ.
"""

from __future__ import annotations

import copy
from collections.abc import Mapping
from typing import Any

import torch

from kuberl.core.async_algorithm import (
    RECURRENT_COLUMNS,
    AsyncVTraceAlgorithm,
    forward_sequences,
    policy_dist_inputs,
)
from kuberl.core.async_sampling import sequence_minibatches
from kuberl.core.distributions import ActionDistribution
from kuberl.core.learner import Learner
from kuberl.core.sample_batch import Columns, SampleBatch
from kuberl.core.vtrace import vtrace
from kuberl.spec.algorithms.appo import APPOConfig

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


def appo_loss(
    module: torch.nn.Module,
    target: torch.nn.Module,
    dist: ActionDistribution,
    seq: Mapping[str, torch.Tensor],
    *,
    config: APPOConfig,
    kl_coeff: float,
) -> dict[str, torch.Tensor]:
    """The APPO objective on time-major sequences [T, n], as named terms (`total_loss` is minimised)."""
    _, actions, dist_in, values, next_values, logp = forward_sequences(module, dist, seq)
    T, n = values.shape
    with torch.no_grad():
        old_dist_in = policy_dist_inputs(target, seq)
        old_logp = dist.logp(old_dist_in, actions).reshape(T, n)
    behaviour_logp = seq[Columns.ACTION_LOGP]

    vt = vtrace(
        behaviour_logp,
        old_logp,
        seq[Columns.REWARDS],
        values.detach(),
        next_values,
        seq[Columns.TERMINATEDS],
        seq[Columns.TRUNCATEDS],
        gamma=config.gamma,
        clip_rho_threshold=config.vtrace_clip_rho_threshold,
        clip_pg_rho_threshold=config.vtrace_clip_pg_rho_threshold,
    )
    adv = vt.pg_advantages
    # π / π_target, as RLlib writes it: clip(μ / π_target, 0, 2) · π / μ.
    is_ratio = torch.clamp(torch.exp(behaviour_logp - old_logp), 0.0, 2.0)
    ratio = is_ratio * torch.exp(logp - behaviour_logp)
    surrogate = torch.min(
        ratio * adv, torch.clamp(ratio, 1.0 - config.clip_param, 1.0 + config.clip_param) * adv
    )
    policy_loss = -surrogate.mean()
    vf_loss = 0.5 * (values - vt.vs).pow(2).mean()
    entropy = dist.entropy(dist_in).mean()
    kl = dist.kl(old_dist_in, dist_in).mean()
    total = policy_loss + config.vf_loss_coeff * vf_loss - config.entropy_coeff * entropy
    if config.use_kl_loss:
        total = total + kl_coeff * kl
    with torch.no_grad():
        clip_frac = ((ratio - 1.0).abs() > config.clip_param).float().mean()
    return {
        "total_loss": total,
        "policy_loss": policy_loss,
        "vf_loss": vf_loss,
        "entropy": entropy,
        "kl": kl,
        "clip_frac": clip_frac,
        "mean_rho": vt.rhos.mean(),
        "vtrace_target_mean": vt.vs.mean(),
    }


# ---------------------------------------------------------------------------------------------------
# Learner: `num_epochs` passes over a train batch in minibatches of whole sequences; π_target refresh
# ---------------------------------------------------------------------------------------------------


class APPOLearner(Learner):
    def __init__(
        self, module: torch.nn.Module, dist: ActionDistribution, config: APPOConfig, device: torch.device
    ) -> None:
        super().__init__(
            module, lr=config.lr, grad_clip=config.grad_clip, device=device, lr_schedule=config.lr_schedule
        )
        self.config = config
        self.dist = dist
        self.target = copy.deepcopy(self.module).requires_grad_(False)
        self.kl_coeff = config.kl_coeff
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
                terms = appo_loss(self.module, self.target, self.dist, mb, config=cfg, kl_coeff=self.kl_coeff)
                grad_norm += self.apply_gradients(terms["total_loss"])
                for k, v in terms.items():
                    sums[k] = sums.get(k, 0.0) + float(v.detach())
                steps += 1
        self.version += 1
        if self.version % cfg.target_network_update_freq == 0:
            self.target.load_state_dict(self.module.state_dict())
        stats = {k: v / max(steps, 1) for k, v in sums.items()}
        stats["grad_norm"] = grad_norm / max(steps, 1)
        stats["lr"] = lr
        if cfg.use_kl_loss:  # adaptive KL weight, as PPO's paper (section 4) and RLlib
            if stats["kl"] > 2.0 * cfg.kl_target:
                self.kl_coeff *= 1.5
            elif stats["kl"] < 0.5 * cfg.kl_target:
                self.kl_coeff *= 0.5
            stats["kl_coeff"] = self.kl_coeff
        return stats

    def get_state(self) -> dict[str, Any]:
        return {
            **super().get_state(),
            "target": self.target.state_dict(),
            "kl_coeff": self.kl_coeff,
            "version": self.version,
        }

    def set_state(self, state: Mapping[str, Any]) -> None:
        super().set_state(state)
        self.target.load_state_dict(state["target"])
        self.kl_coeff = float(state["kl_coeff"])
        self.version = int(state["version"])


# ---------------------------------------------------------------------------------------------------
# Training step: poll the runners → train on each full batch → broadcast every `broadcast_interval`
# ---------------------------------------------------------------------------------------------------


class APPO(AsyncVTraceAlgorithm):
    """Asynchronous sampling, queueing and broadcasting: kuberl.core.async_algorithm."""

    name = "APPO"
    config: APPOConfig

    def make_learner(
        self, module: torch.nn.Module, dist: ActionDistribution, device: torch.device
    ) -> APPOLearner:
        return APPOLearner(module, dist, self.config, device)
