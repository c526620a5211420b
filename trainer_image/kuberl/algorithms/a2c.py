"""Advantage Actor-Critic, synchronous (A2C; Mnih et al. 2016, https://arxiv.org/abs/1602.01783).

The synchronous form of A3C that OpenAI Baselines and SB3 popularised: every runner samples a fixed
fragment with the same weights, and one gradient step is taken on the joined batch.

  config  → `A2CConfig` (kuberl.spec.algorithms.a2c; every field documented there, RLlib names accepted)
  network → `ActorCritic` (kuberl.core.models): MLP policy and value heads
  loss    → `actor_critic_loss` (kuberl.algorithms.families.actor_critic): −log π·A + c_v·½(V − R)² − c_e·H
  step    → the training step shared with PG (kuberl.algorithms.families.sync): sample T steps on every
            sub-env → `A2C.estimate_returns` (GAE or n-step returns) → one gradient step (or one pass
            of minibatches) → broadcast weights
"""

from __future__ import annotations

from typing import ClassVar

from kuberl.algorithms.families.actor_critic import loss_batch
from kuberl.algorithms.families.sync import SyncActorCriticAlgorithm
from kuberl.core.sample_batch import SampleBatch
from kuberl.spec.algorithms.a2c import A2CConfig


class A2C(SyncActorCriticAlgorithm[A2CConfig]):
    """Sampling, the learner and the training step: kuberl.algorithms.families.sync (shared with PG)."""

    name = "A2C"
    default_train_batch_size: ClassVar[int] = 500
    returns_timer: ClassVar[str] = "advantages"

    def estimate_returns(self, batch: SampleBatch) -> SampleBatch:
        """GAE(λ) advantages, or n-step returns to the fragment's end (use_gae: false)."""
        cfg = self.config
        return loss_batch(batch, gamma=cfg.gamma, lambda_=cfg.lambda_, use_gae=cfg.use_gae)

    def minibatching(self) -> tuple[int | None, int | None]:
        return self.config.minibatch_size, self.config.microbatch_size
