"""What SAC (kuberl.algorithms.sac) and CQL (kuberl.algorithms.cql, which is SAC plus a conservative
penalty on the critics) share: the maximum-entropy losses of Haarnoja et al. 2018
(https://arxiv.org/abs/1812.05905) as pure functions returning named terms, and the learner's
temperature, gradient steps and checkpoint layout (`SoftActorCriticLearner`, a core `Learner`).

Each algorithm file builds its networks and writes its `update` from these pieces, so it still reads
like its paper; what is its own (discrete SAC's exact expectations, CQL's penalty and behaviour-cloning
warm-up) stays there.
"""

from __future__ import annotations

import copy
import math
from collections.abc import Mapping
from typing import Any, Generic, Protocol, TypeVar

import torch
from torch import nn

from kuberl.core.learner import Learner, load_state_dicts, make_adam, state_dicts
from kuberl.core.networks import QEnsemble
from kuberl.spec.algorithms import ModelConfig

# The learner's networks and optimizers, by attribute name: its checkpoint layout.
STATE_PARTS = ("actor", "critic", "target_critic", "actor_opt", "critic_opt", "alpha_opt")

# ---------------------------------------------------------------------------------------------------
# Losses (each returns named terms; the first is the one minimised)
# ---------------------------------------------------------------------------------------------------


def soft_value(next_q: torch.Tensor, next_logp: torch.Tensor, alpha: torch.Tensor) -> torch.Tensor:
    """V(s') = min_i Q'_i(s', a') − α log π(a'|s') for a' ~ π(·|s'); next_q: [E, B] (clipped double Q)."""
    return next_q.min(0).values - alpha * next_logp


def soft_q_target(
    rewards: torch.Tensor, discount: torch.Tensor | float, terminateds: torch.Tensor, next_v: torch.Tensor
) -> torch.Tensor:
    """y = r + γ^k (1 − terminated) V(s'); `discount` is γ^k per sample (n-step replay) or γ."""
    return rewards + discount * (~terminateds).float() * next_v


def critic_loss(
    q: torch.Tensor, target: torch.Tensor, weights: torch.Tensor | None = None
) -> dict[str, torch.Tensor]:
    """Σ_i ½ E[w (Q_i(s,a) − y)²] over the critics i (q: [E, B]); importance weights w from prioritized
    replay (none: 1). Also |TD error| per sample, averaged over the critics (the new priorities)."""
    td = q - target.unsqueeze(0)
    sq = td.pow(2) if weights is None else weights * td.pow(2)
    return {"critic_loss": 0.5 * sq.mean(-1).sum(), "td_error": td.detach().abs().mean(0)}


def actor_loss(logp: torch.Tensor, q_pi: torch.Tensor, alpha: torch.Tensor) -> dict[str, torch.Tensor]:
    """E_s E_{a~π}[α log π(a|s) − min_i Q_i(s, a)] (the reparameterised KL to the Boltzmann policy)."""
    return {"actor_loss": (alpha * logp - q_pi).mean()}


def alpha_loss(
    log_alpha: torch.Tensor, entropy: torch.Tensor, target_entropy: float | torch.Tensor
) -> dict[str, torch.Tensor]:
    """J(α) = E[−α (log π + H̄)] = E[α (H − H̄)], on log α: α falls while the entropy H is above the
    target H̄ and rises below it. `entropy` is −log π(a|s) of sampled actions (continuous) or the exact
    entropy of the categorical policy (discrete); H̄ is a number, or one per state [B] with action masks."""
    return {"alpha_loss": (log_alpha * (entropy.detach() - target_entropy)).mean()}


# ---------------------------------------------------------------------------------------------------
# Learner parts
# ---------------------------------------------------------------------------------------------------


class SoftActorCriticSettings(Protocol):
    """The config fields the learner reads: SAC's and CQL's configs both have them (read-only here)."""

    @property
    def model(self) -> ModelConfig: ...
    @property
    def twin_q(self) -> bool: ...
    @property
    def initial_alpha(self) -> float: ...
    @property
    def lr(self) -> float: ...
    @property
    def actor_lr(self) -> float | None: ...
    @property
    def critic_lr(self) -> float | None: ...
    @property
    def alpha_lr(self) -> float | None: ...
    @property
    def grad_clip(self) -> float | None: ...
    @property
    def tau(self) -> float: ...


ConfigT = TypeVar("ConfigT", bound=SoftActorCriticSettings)


class SoftActorCriticLearner(Learner, Generic[ConfigT]):
    """A `Learner` whose module is the actor, with E critics as one batched ensemble (two with twin_q:
    clipped double Q), their Polyak target, the temperature log α, and an Adam each for actor, critics
    and α (actor_lr, critic_lr, alpha_lr, each falling back to lr); the checkpoint is STATE_PARTS.
    Subclasses build their actor first (parameters initialise in this order), then call this."""

    actor: nn.Module

    def __init__(
        self,
        config: ConfigT,
        actor: nn.Module,
        *,
        n_obs: int,
        n_act: int,
        discrete: bool,
        device: torch.device,
    ) -> None:
        super().__init__(
            actor, lr=config.actor_lr or config.lr, grad_clip=config.grad_clip, device=device, adam_eps=1e-8
        )
        self.config = config
        self.actor = self.module
        members = 2 if config.twin_q else 1
        self.critic = QEnsemble(n_obs, n_act, config.model, members=members, discrete=discrete).to(device)
        self.target_critic = copy.deepcopy(self.critic).requires_grad_(False)
        self.log_alpha = torch.tensor(math.log(config.initial_alpha), device=device, requires_grad=True)
        self.actor_opt = self.optimizer  # the checkpoint's name for the module's optimizer
        self.critic_opt = make_adam(self.critic.parameters(), lr=config.critic_lr or config.lr)
        self.alpha_opt = make_adam([self.log_alpha], lr=config.alpha_lr or config.lr)
        self.num_updates = 0

    def update(self, mb: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """One gradient update on a replay minibatch: the detached loss terms (and `td_error` per
        sample for prioritized replay); counts `num_updates`."""
        raise NotImplementedError(f"{type(self).__name__} must define its update")

    def critic_step(self, loss: torch.Tensor) -> None:
        """One gradient step of the critics on `loss`."""
        self.step(loss, optimizer=self.critic_opt, params=self.critic.parameters())

    def alpha_step(self, loss: torch.Tensor) -> None:
        """One gradient step of the temperature log α on `loss`."""
        self.step(loss, optimizer=self.alpha_opt, params=[self.log_alpha])

    def get_state(self) -> dict[str, Any]:
        return {
            **state_dicts(self, STATE_PARTS),
            "log_alpha": self.log_alpha.detach().clone(),
            "num_updates": self.num_updates,
        }

    def set_state(self, state: Mapping[str, Any]) -> None:
        load_state_dicts(self, state, STATE_PARTS)
        with torch.no_grad():
            self.log_alpha.copy_(state["log_alpha"])
        self.num_updates = int(state["num_updates"])
