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

import torch

from kuberl.algorithms.families.vtrace_async import AsyncVTraceAlgorithm, VTraceLearner, forward_sequences
from kuberl.core.distributions import ActionDistribution
from kuberl.core.returns import vtrace
from kuberl.core.sample_batch import Columns
from kuberl.spec.algorithms.impala import IMPALAConfig

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


class IMPALALearner(VTraceLearner):
    """The update loop (kuberl.algorithms.families.vtrace_async.VTraceLearner) on `impala_loss`."""

    config: IMPALAConfig

    def loss(self, seq: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        return impala_loss(self.module, self.dist, seq, config=self.config)


# ---------------------------------------------------------------------------------------------------
# Training step: poll the runners → train on each full batch → broadcast every `broadcast_interval`
# ---------------------------------------------------------------------------------------------------


class IMPALA(AsyncVTraceAlgorithm[IMPALAConfig]):
    """Asynchronous sampling, queueing and broadcasting: kuberl.algorithms.families.vtrace_async."""

    name = "IMPALA"
    learner_class = IMPALALearner
