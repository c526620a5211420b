"""Deep Deterministic Policy Gradient (Lillicrap et al. 2016, https://arxiv.org/abs/1509.02971),
continuous actions. TD3 (kuberl.algorithms.td3) without its three changes: one critic, no target
policy smoothing, the actor and targets updated with every critic step.

Reads top to bottom like the paper's Algorithm 1:
  config  → `DDPGConfig` (kuberl.spec.algorithms.ddpg; every field documented there, RLlib names accepted)
  network → deterministic tanh actor, one critic, target copies of both, in the actor's [-1, 1] action
            space (`DDPGLearner`, on kuberl.algorithms.families.deterministic_actor_critic, which TD3 shares)
  loss    → `ddpg_target` (r + γ Q'(s', μ'(s'))), `critic_loss`, `actor_loss` (−Q(s, μ(s)))
  step    → `DDPG.training_step`: sample (Gaussian or Ornstein-Uhlenbeck noise in the runners) → n-step
            transitions into replay → k steps of critic, actor and Polyak targets → broadcast the actor
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch

from kuberl.algorithms.families.deterministic_actor_critic import DeterministicActorCriticLearner
from kuberl.algorithms.families.offpolicy_actor import (
    OffPolicyActorAlgorithm,
    deterministic_runner_options,
    deterministic_runner_overrides,
)
from kuberl.core.replay import WEIGHTS
from kuberl.core.returns import DISCOUNTS
from kuberl.core.sample_batch import Columns
from kuberl.spec.algorithms.ddpg import DDPGConfig

# ---------------------------------------------------------------------------------------------------
# Losses
# ---------------------------------------------------------------------------------------------------


def ddpg_target(mb: Mapping[str, torch.Tensor], next_q: torch.Tensor) -> torch.Tensor:
    """y = r + γ^k (1 − terminated) Q'(s', μ'(s')); next_q: [1, B]."""
    return mb[Columns.REWARDS] + mb[DISCOUNTS] * (~mb[Columns.TERMINATEDS]).float() * next_q[0]


def critic_loss(q: torch.Tensor, target: torch.Tensor, weights: torch.Tensor) -> dict[str, torch.Tensor]:
    """E[w (Q(s,a) − y)²] (q: [1, B]); w are replay importance weights."""
    td = q - target.unsqueeze(0)
    return {"critic_loss": (weights * td.pow(2)).mean(-1).sum(), "td_error": td.detach().abs().mean(0)}


def actor_loss(q1_pi: torch.Tensor) -> dict[str, torch.Tensor]:
    """Deterministic policy gradient: maximise Q(s, μ(s))."""
    return {"actor_loss": -q1_pi.mean()}


# ---------------------------------------------------------------------------------------------------
# Learner
# ---------------------------------------------------------------------------------------------------


class DDPGLearner(DeterministicActorCriticLearner[DDPGConfig]):
    """One critic; every update steps the critic, then the actor and the Polyak targets."""

    algorithm = "DDPG"

    def update(self, mb: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        obs, next_obs = mb[Columns.OBS], mb[Columns.NEXT_OBS]
        with torch.no_grad():
            target = ddpg_target(mb, self.target_critic(next_obs, self.target_actor(next_obs)))
        q = self.critic(obs, self.scaler.from_env(mb[Columns.ACTIONS]))
        terms = critic_loss(q, target, mb[WEIGHTS])
        self.critic_step(terms["critic_loss"])

        terms |= actor_loss(self.critic(obs, self.actor(obs))[0])
        self.actor_step(terms["actor_loss"])
        return self.report(terms, q, target)


# ---------------------------------------------------------------------------------------------------
# Training step
# ---------------------------------------------------------------------------------------------------


class DDPG(OffPolicyActorAlgorithm[DDPGConfig]):
    name = "DDPG"

    def runner_overrides(self) -> dict[str, Any]:
        return deterministic_runner_overrides(self.config)

    def runner_options(self) -> dict[str, Any]:
        return deterministic_runner_options(self.config, self.timesteps)

    def build_learner(self, device: torch.device) -> DDPGLearner:
        return DDPGLearner(self.obs_space, self.action_space, self.config, device)
