"""Deep Deterministic Policy Gradient (Lillicrap et al. 2016, https://arxiv.org/abs/1509.02971),
continuous actions. TD3 (kuberl.algorithms.td3) without its three changes: one critic, no target
policy smoothing, the actor and targets updated with every critic step.

Reads top to bottom like the paper's Algorithm 1:
  config  → `DDPGConfig` (kuberl.spec.algorithms.ddpg; every field documented there, RLlib names accepted)
  network → deterministic tanh actor, one critic, target copies of both, in the actor's [-1, 1] action
            space (`DDPGLearner` in kuberl.algorithms.families.deterministic_actor_critic, on the learner TD3 shares)
  loss    → `ddpg_target` (r + γ Q'(s', μ'(s'))), `critic_loss`, `actor_loss` (−Q(s, μ(s)))
  step    → `DDPG.training_step`: sample (Gaussian or Ornstein-Uhlenbeck noise in the runners) → n-step
            transitions into replay → k steps of critic, actor and Polyak targets → broadcast the actor
"""

from __future__ import annotations

from typing import Any

import torch

# DDPG's target (r + γ Q'(s', μ'(s'))), critic and actor losses and its learner live in the family,
# which Ape-X DDPG trains as well.
from kuberl.algorithms.families.deterministic_actor_critic import (
    DDPGLearner,
    actor_loss,
    critic_loss,
    ddpg_target,
)
from kuberl.algorithms.families.offpolicy_actor import (
    OffPolicyActorAlgorithm,
    deterministic_runner_options,
    deterministic_runner_overrides,
)
from kuberl.spec.algorithms.ddpg import DDPGConfig

__all__ = ["DDPG", "DDPGLearner", "actor_loss", "critic_loss", "ddpg_target"]

# ---------------------------------------------------------------------------------------------------
# Training step
# ---------------------------------------------------------------------------------------------------


class DDPG(OffPolicyActorAlgorithm[DDPGConfig]):
    name = "DDPG"

    def runner_overrides(self) -> dict[str, Any]:
        return deterministic_runner_overrides(self.config)

    def runner_options(self) -> dict[str, Any]:
        return deterministic_runner_options(self.config, self.timesteps)

    def build_learner(self, device: torch.device) -> DDPGLearner[DDPGConfig]:
        return DDPGLearner(self.obs_space, self.action_space, self.config, device)
