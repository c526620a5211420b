"""Twin Delayed DDPG (Fujimoto et al. 2018, https://arxiv.org/abs/1802.09477), continuous actions.

Reads top to bottom like the paper's Algorithm 1:
  config  → `TD3Config` (kuberl.spec.algorithms.td3; every field documented there, RLlib names accepted)
  network → deterministic tanh actor, twin critics as one batched ensemble, target copies of both,
            all in the actor's [-1, 1] action space (`TD3Learner`, on kuberl.algorithms.families.deterministic_actor_critic)
  loss    → `target_policy_smoothing` + `td3_target` (clipped double Q), `critic_loss`, `actor_loss` (−Q₁(s, μ(s)))
  step    → `TD3.training_step`: sample (exploration noise in the runners) → n-step transitions into
            replay → k critic steps, every `policy_delay`-th also an actor step and Polyak targets →
            broadcast the actor
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import gymnasium as gym
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
from kuberl.spec.algorithms.td3 import TD3Config

# ---------------------------------------------------------------------------------------------------
# Losses
# ---------------------------------------------------------------------------------------------------


def target_policy_smoothing(
    actions: torch.Tensor, *, noise: float, noise_clip: float, generator: torch.Generator | None = None
) -> torch.Tensor:
    """ã = clip(μ'(s') + clip(ε, −c, c), −1, 1), ε ~ N(0, σ²): the target is an average over nearby
    actions, so the critic cannot exploit a narrow peak of its own error (paper §5.3)."""
    eps = (torch.randn(actions.shape, generator=generator, device=actions.device) * noise).clamp(
        -noise_clip, noise_clip
    )
    return (actions + eps).clamp(-1.0, 1.0)


def td3_target(mb: Mapping[str, torch.Tensor], next_q: torch.Tensor) -> torch.Tensor:
    """y = r + γ^k (1 − terminated) min_i Q'_i(s', ã); next_q: [E, B]."""
    return mb[Columns.REWARDS] + mb[DISCOUNTS] * (~mb[Columns.TERMINATEDS]).float() * next_q.min(0).values


def critic_loss(q: torch.Tensor, target: torch.Tensor, weights: torch.Tensor) -> dict[str, torch.Tensor]:
    """Σ_i E[w (Q_i(s,a) − y)²] over the critics (q: [E, B]); w are replay importance weights."""
    td = q - target.unsqueeze(0)
    return {"critic_loss": (weights * td.pow(2)).mean(-1).sum(), "td_error": td.detach().abs().mean(0)}


def actor_loss(q1_pi: torch.Tensor) -> dict[str, torch.Tensor]:
    """Deterministic policy gradient through the first critic: maximise Q₁(s, μ(s))."""
    return {"actor_loss": -q1_pi.mean()}


# ---------------------------------------------------------------------------------------------------
# Learner
# ---------------------------------------------------------------------------------------------------


class TD3Learner(DeterministicActorCriticLearner[TD3Config]):
    """Twin critics (unless twin_q is off); smoothed target actions drawn from `gen`; the actor and the
    Polyak targets step every `policy_delay`-th critic update."""

    algorithm = "TD3"

    def __init__(
        self, obs_space: gym.Space[Any], action_space: gym.Space[Any], config: TD3Config, device: torch.device
    ) -> None:
        super().__init__(obs_space, action_space, config, device)
        self.gen = torch.Generator(device=device)

    def num_critics(self) -> int:
        return 2 if self.config.twin_q else 1

    def update(self, mb: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        cfg = self.config
        obs, next_obs = mb[Columns.OBS], mb[Columns.NEXT_OBS]
        with torch.no_grad():
            next_a = self.target_actor(next_obs)
            if cfg.smooth_target_policy:
                next_a = target_policy_smoothing(
                    next_a, noise=cfg.target_noise, noise_clip=cfg.target_noise_clip, generator=self.gen
                )
            target = td3_target(mb, self.target_critic(next_obs, next_a))
        q = self.critic(obs, self.scaler.from_env(mb[Columns.ACTIONS]))
        terms = critic_loss(q, target, mb[WEIGHTS])
        self.critic_step(terms["critic_loss"])

        if self.num_updates % cfg.policy_delay == 0:  # delayed policy and target updates
            # Q₁ alone, as a fixed function of the action: the actor's gradient, nothing else.
            terms |= actor_loss(self.critic(obs, self.actor(obs), frozen=True, members=1)[0])
            self.actor_step(terms["actor_loss"])
        return self.report(terms, q, target)

    def get_state(self) -> dict[str, Any]:
        return {**super().get_state(), "gen": self.gen.get_state()}

    def set_state(self, state: Mapping[str, Any]) -> None:
        super().set_state(state)
        self.gen.set_state(state["gen"])


# ---------------------------------------------------------------------------------------------------
# Training step
# ---------------------------------------------------------------------------------------------------


class TD3(OffPolicyActorAlgorithm[TD3Config]):
    name = "TD3"

    def runner_overrides(self) -> dict[str, Any]:
        return deterministic_runner_overrides(self.config)

    def runner_options(self) -> dict[str, Any]:
        return deterministic_runner_options(self.config, self.timesteps)

    def build_learner(self, device: torch.device) -> TD3Learner:
        learner = TD3Learner(self.obs_space, self.action_space, self.config, device)
        learner.gen.manual_seed(self.spec.seed or 0)
        return learner
