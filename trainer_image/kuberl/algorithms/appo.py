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

from kuberl.algorithms.families.vtrace_async import (
    AsyncVTraceAlgorithm,
    VTraceLearner,
    forward_sequences,
    policy_dist_inputs,
)
from kuberl.core.distributions import ActionDistribution
from kuberl.core.returns import vtrace
from kuberl.core.sample_batch import Columns, SampleBatch
from kuberl.spec.algorithms.appo import APPOConfig

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


class APPOLearner(VTraceLearner):
    """The update loop (kuberl.algorithms.families.vtrace_async.VTraceLearner) on `appo_loss`, plus the target
    network π_target, refreshed every `target_network_update_freq` train batches, and the adaptive KL
    weight."""

    config: APPOConfig

    def __init__(
        self, module: torch.nn.Module, dist: ActionDistribution, config: APPOConfig, device: torch.device
    ) -> None:
        super().__init__(module, dist, config, device)
        self.target = copy.deepcopy(self.module).requires_grad_(False)
        self.kl_coeff = config.kl_coeff

    def loss(self, seq: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        return appo_loss(self.module, self.target, self.dist, seq, config=self.config, kl_coeff=self.kl_coeff)

    def update(self, batch: SampleBatch, *, timesteps: int, generator: torch.Generator) -> dict[str, float]:
        cfg = self.config
        stats = super().update(batch, timesteps=timesteps, generator=generator)
        if self.version % cfg.target_network_update_freq == 0:
            self.target.load_state_dict(self.module.state_dict())
        if cfg.use_kl_loss:  # adaptive KL weight, as PPO's paper (section 4) and RLlib
            if stats["kl"] > 2.0 * cfg.kl_target:
                self.kl_coeff *= 1.5
            elif stats["kl"] < 0.5 * cfg.kl_target:
                self.kl_coeff *= 0.5
            stats["kl_coeff"] = self.kl_coeff
        return stats

    def get_state(self) -> dict[str, Any]:
        return {**super().get_state(), "target": self.target.state_dict(), "kl_coeff": self.kl_coeff}

    def set_state(self, state: Mapping[str, Any]) -> None:
        super().set_state(state)
        self.target.load_state_dict(state["target"])
        self.kl_coeff = float(state["kl_coeff"])


# ---------------------------------------------------------------------------------------------------
# Training step: poll the runners → train on each full batch → broadcast every `broadcast_interval`
# ---------------------------------------------------------------------------------------------------


class APPO(AsyncVTraceAlgorithm[APPOConfig]):
    """Asynchronous sampling, queueing and broadcasting: kuberl.algorithms.families.vtrace_async."""

    name = "APPO"
    learner_class = APPOLearner
