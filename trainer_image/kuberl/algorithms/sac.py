"""Soft Actor-Critic (Haarnoja et al. 2018, https://arxiv.org/abs/1812.05905), continuous actions, and
its discrete-action variant (Christodoulou 2019, https://arxiv.org/abs/1910.07207).

Reads top to bottom like Algorithm 1 of "SAC: Algorithms and Applications":
  config  → `SACConfig` (kuberl.spec.algorithms.sac; every field documented there, RLlib names accepted)
  network → tanh-squashed Gaussian actor (or a categorical one), twin critics as one batched ensemble,
            target critics, log α (kuberl.algorithms.families.continuous)
  loss    → `critic_loss` (soft Bellman residual against the clipped double-Q target), `actor_loss`
            (E[α log π − Q]), `alpha_loss` (−log α · (log π + H̄)); discrete: exact expectations over actions
  step    → `SAC.training_step`: sample → n-step transitions into replay → k gradient steps (critic,
            actor, α, Polyak targets) → broadcast the actor
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

import gymnasium as gym
import torch
from torch import nn
from torch.nn import functional as F

from kuberl.algorithms.families.continuous import CategoricalPolicy, SquashedGaussianPolicy
from kuberl.algorithms.families.offpolicy_actor import OffPolicyActorAlgorithm
from kuberl.algorithms.families.soft_actor_critic import (
    SoftActorCriticLearner,
    actor_loss,
    alpha_loss,
    critic_loss,
    soft_q_target,
    soft_value,
)
from kuberl.core.models import obs_dim
from kuberl.core.multi_agent.masking import legal_actions, mask_slice, mask_values, random_legal_actions
from kuberl.core.networks import ActionScaler, CategoricalActor, SquashedGaussianActor, action_dims
from kuberl.core.policy import RunnerPolicy
from kuberl.core.replay import WEIGHTS
from kuberl.core.returns import DISCOUNTS
from kuberl.core.sample_batch import Columns
from kuberl.core.target import polyak_update
from kuberl.spec.algorithms import ModelConfig
from kuberl.spec.algorithms.sac import SACConfig

# ---------------------------------------------------------------------------------------------------
# Action masks (discrete SAC): observations with an `action_mask` key (kuberl.core.multi_agent.masking)
# ---------------------------------------------------------------------------------------------------


class MaskedCategoricalActor(CategoricalActor):
    """The categorical actor with illegal actions' logits at ILLEGAL_LOGIT, as MaskedActorCritic does:
    π gives them probability 0, and the critic target's expectation over s' only sums legal actions (the
    mask is part of s'). Same parameters, so the same state-dict keys as CategoricalActor."""

    def __init__(self, n_obs: int, n_act: int, config: ModelConfig, *, mask: slice) -> None:
        super().__init__(n_obs, n_act, config)
        self.mask = mask

    def forward(self, obs: torch.Tensor) -> torch.Tensor:
        return mask_values(super().forward(obs), obs, self.mask)


class MaskedCategoricalPolicy(CategoricalPolicy):
    """Discrete SAC's runner side with an action mask: the masked actor, and warm-up random actions drawn
    among the legal ones."""

    def build_module(
        self, obs_space: gym.Space[Any], model: ModelConfig, options: dict[str, Any]
    ) -> nn.Module:
        mask = discrete_mask(obs_space, self.action_space)
        assert mask is not None
        self.mask = mask
        self.actor = MaskedCategoricalActor(obs_dim(obs_space), int(self.action_space.n), model, mask=mask)
        return self.actor

    def act(self, obs: torch.Tensor, *, explore: bool, generator: torch.Generator) -> dict[str, torch.Tensor]:
        if explore and self.random_actions:
            actions = random_legal_actions(legal_actions(obs, self.mask), generator)
            return {Columns.ACTIONS: actions + int(self.action_space.start)}
        return super().act(obs, explore=explore, generator=generator)


def discrete_mask(obs_space: gym.Space[Any], action_space: gym.Space[Any]) -> slice | None:
    """Where the action mask lies in the flat observation, for Discrete actions; None without a mask."""
    mask = mask_slice(obs_space)
    if mask is None or not isinstance(action_space, gym.spaces.Discrete):
        return None
    if mask.stop - mask.start != int(action_space.n):
        raise ValueError(f"'action_mask' must have one entry per action of {action_space}")
    return mask


def masked_target_entropy(obs: torch.Tensor, mask: slice, scale: float) -> torch.Tensor:
    """The automatic entropy target per state, scale · log(number of legal actions): the uniform policy's
    entropy is log of the legal count, so a fixed 0.98 · log n would be out of reach where few moves are
    legal and α would grow without bound."""
    return scale * legal_actions(obs, mask).sum(-1).float().log()


# ---------------------------------------------------------------------------------------------------
# Losses: soft_q_target, critic_loss, actor_loss and alpha_loss are kuberl.algorithms.families.soft_actor_critic's
# (shared with CQL); discrete SAC's exact expectations over the actions are its own.
# ---------------------------------------------------------------------------------------------------


def discrete_expectations(
    logits: torch.Tensor, q: torch.Tensor, alpha: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """Discrete SAC: with the full distribution π(·|s) at hand, expectations are sums, not samples.
    Returns (V(s) = Σ_a π(a|s) [Q(s,a) − α log π(a|s)], H(π(·|s))); q: [B, n] (already min over critics)."""
    logp = F.log_softmax(logits, dim=-1)
    p = logp.exp()
    v = (p * (q - alpha * logp)).sum(-1)
    entropy = -(p * logp).sum(-1)
    return v, entropy


# ---------------------------------------------------------------------------------------------------
# Learner: one gradient step of critic, actor and temperature
# ---------------------------------------------------------------------------------------------------


class SACLearner(SoftActorCriticLearner[SACConfig]):
    def __init__(
        self,
        obs_space: gym.Space[Any],
        action_space: gym.Space[Any],
        config: SACConfig,
        device: torch.device,
    ) -> None:
        n_obs = obs_dim(obs_space)
        n_act, self.discrete = action_dims(action_space)
        self.action_start = int(action_space.start) if isinstance(action_space, gym.spaces.Discrete) else 0
        self.scaler = (
            ActionScaler(action_space).to(device) if isinstance(action_space, gym.spaces.Box) else None
        )
        self.mask = discrete_mask(obs_space, action_space)
        actor = (
            (
                CategoricalActor(n_obs, n_act, config.model)
                if self.mask is None
                else MaskedCategoricalActor(n_obs, n_act, config.model, mask=self.mask)
            )
            if self.discrete
            else SquashedGaussianActor(n_obs, n_act, config.model)
        )
        super().__init__(config, actor, n_obs=n_obs, n_act=n_act, discrete=self.discrete, device=device)
        # With an action mask and "auto", the target is per state (masked_target_entropy); this is its bound.
        self.auto_masked_entropy = self.mask is not None and config.target_entropy == "auto"
        if config.target_entropy != "auto":
            self.target_entropy = float(config.target_entropy)
        else:
            self.target_entropy = 0.98 * math.log(n_act) if self.discrete else -float(n_act)

    def _continuous_terms(
        self, mb: Mapping[str, torch.Tensor], alpha: torch.Tensor
    ) -> dict[str, torch.Tensor]:
        assert isinstance(self.actor, SquashedGaussianActor)
        assert self.scaler is not None
        obs, next_obs = mb[Columns.OBS], mb[Columns.NEXT_OBS]
        with torch.no_grad():
            next_a, next_logp = self.actor.sample(next_obs)
            next_v = soft_value(self.target_critic(next_obs, next_a), next_logp, alpha)
            target = soft_q_target(mb[Columns.REWARDS], mb[DISCOUNTS], mb[Columns.TERMINATEDS], next_v)
        q = self.critic(obs, self.scaler.from_env(mb[Columns.ACTIONS]))
        terms = critic_loss(q, target, mb[WEIGHTS])
        self.critic_step(terms["critic_loss"])

        a_pi, logp = self.actor.sample(obs)
        q_pi = self.critic(obs, a_pi, frozen=True).min(0).values  # the actor's gradient only
        terms |= actor_loss(logp, q_pi, alpha)
        self.step(terms["actor_loss"])
        entropy = -logp.detach()
        return terms | {"q_mean": q.detach().mean(), "target_q_mean": target.mean(), "entropy": entropy}

    def _discrete_terms(self, mb: Mapping[str, torch.Tensor], alpha: torch.Tensor) -> dict[str, torch.Tensor]:
        obs, next_obs = mb[Columns.OBS], mb[Columns.NEXT_OBS]
        with torch.no_grad():
            next_v, _ = discrete_expectations(
                self.actor(next_obs), self.target_critic(next_obs).min(0).values, alpha
            )
            target = soft_q_target(mb[Columns.REWARDS], mb[DISCOUNTS], mb[Columns.TERMINATEDS], next_v)
        actions = (mb[Columns.ACTIONS].long() - self.action_start).view(1, -1, 1)
        q_all = self.critic(obs)  # [E, B, n]
        q = q_all.gather(-1, actions.expand(q_all.shape[0], -1, 1)).squeeze(-1)
        terms = critic_loss(q, target, mb[WEIGHTS])
        self.critic_step(terms["critic_loss"])

        # The policy improves against the critic without moving it: Q enters as a constant.
        v_pi, entropy = discrete_expectations(self.actor(obs), q_all.detach().min(0).values, alpha)
        terms["actor_loss"] = -v_pi.mean()
        self.step(terms["actor_loss"])
        return terms | {
            "q_mean": q.detach().mean(),
            "target_q_mean": target.mean(),
            "entropy": entropy.detach(),
        }

    def update(self, mb: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """One SAC gradient step on a replay minibatch; returns detached tensors (no host sync)."""
        alpha = self.log_alpha.detach().exp()
        terms = self._discrete_terms(mb, alpha) if self.discrete else self._continuous_terms(mb, alpha)
        entropy = terms.pop("entropy")
        if self.config.tune_alpha:
            target_entropy: float | torch.Tensor = self.target_entropy
            if self.auto_masked_entropy:
                assert self.mask is not None
                target_entropy = masked_target_entropy(mb[Columns.OBS], self.mask, 0.98)
            terms |= alpha_loss(self.log_alpha, entropy, target_entropy)
            self.alpha_step(terms["alpha_loss"])
        polyak_update(self.target_critic, self.critic, self.config.tau)
        self.num_updates += 1
        out = {k: v.detach() for k, v in terms.items() if k != "td_error"}
        out["alpha"] = alpha
        out["entropy"] = entropy.mean()
        out["td_error"] = terms["td_error"]  # [B], for prioritized replay
        return out


# ---------------------------------------------------------------------------------------------------
# Training step
# ---------------------------------------------------------------------------------------------------


class SAC(OffPolicyActorAlgorithm[SACConfig]):
    name = "SAC"

    def runner_overrides(self) -> dict[str, Any]:
        # The runner builds its policy before the driver knows the spaces; the factory picks by action space.
        return {"store_next_obs": True, "policy": sac_runner_policy}

    def runner_options(self) -> dict[str, Any]:
        cfg = self.config
        return {
            "random_actions": cfg.random_warmup
            and self.timesteps < cfg.num_steps_sampled_before_learning_starts
        }

    def build_learner(self, device: torch.device) -> SACLearner:
        return SACLearner(self.obs_space, self.action_space, self.config, device)


def sac_runner_policy(
    obs_space: gym.Space[Any], action_space: gym.Space[Any], model: ModelConfig, options: dict[str, Any]
) -> RunnerPolicy:
    """The runner side (passed in `runner_overrides`; compute_actions acts with it too): a squashed-Gaussian policy for Box actions, a
    categorical one for Discrete ones (masked when the observation carries an `action_mask`)."""
    if isinstance(action_space, gym.spaces.Discrete):
        if discrete_mask(obs_space, action_space) is not None:
            return MaskedCategoricalPolicy(obs_space, action_space, model, options)
        return CategoricalPolicy(obs_space, action_space, model, options)
    return SquashedGaussianPolicy(obs_space, action_space, model, options)
