"""Policy gradient: REINFORCE with a value baseline (Williams 1992, https://doi.org/10.1007/BF00992696).

config  → `PGConfig` (kuberl.spec.algorithms.pg; every field documented there, RLlib names accepted)
network → `ActorCritic` (kuberl.core.models): the policy, and V(s) as the baseline
returns → G_t = Σ γ^k r_{t+k}, Monte-Carlo to the episode's end inside a fragment; bootstrapped with
          V only where the episode was cut (a time-limit truncation, or the fragment's end): DESIGN's
          "bootstrap on truncation". Terminations are worth 0.
loss    → `actor_critic_loss` (kuberl.algorithms.families.actor_critic) with A = G − V(s):
          −log π(a|s)·A  +  c_v·½(V(s) − G)²  −  c_e·H, the baseline trained by regression on G
step    → the training step shared with A2C (kuberl.algorithms.families.sync): sample →
          `PG.estimate_returns` → one gradient step → broadcast weights
"""

from __future__ import annotations

from typing import ClassVar

from kuberl.algorithms.families.actor_critic import loss_batch
from kuberl.algorithms.families.sync import SyncActorCriticAlgorithm
from kuberl.core.sample_batch import SampleBatch
from kuberl.spec.algorithms.pg import PGConfig


class PG(SyncActorCriticAlgorithm[PGConfig]):
    """Sampling, the learner and the training step: kuberl.algorithms.families.sync (shared with A2C)."""

    name = "PG"
    default_train_batch_size: ClassVar[int] = 2000
    returns_timer: ClassVar[str] = "returns"

    def estimate_returns(self, batch: SampleBatch) -> SampleBatch:
        """Monte-Carlo returns (λ = 1, no GAE); advantage = G − V(s). One gradient step on the batch."""
        return loss_batch(batch, gamma=self.config.gamma, lambda_=1.0, use_gae=False)
