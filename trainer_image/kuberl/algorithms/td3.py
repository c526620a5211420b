"""Twin Delayed DDPG (Fujimoto et al. 2018, https://arxiv.org/abs/1802.09477), continuous actions.

Reads top to bottom like the paper's Algorithm 1:
  config  → `TD3Config` (kuberl.spec.algorithms.td3; every field documented there, RLlib names accepted)
  network → deterministic tanh actor, twin critics as one batched ensemble, target copies of both
            (kuberl.core.continuous); all in the actor's [-1, 1] action space
  loss    → `target_policy_smoothing` + `td3_target` (clipped double Q), `critic_loss`, `actor_loss` (−Q₁(s, μ(s)))
  step    → `TD3.training_step`: sample (exploration noise in the runners) → n-step transitions into
            replay → k critic steps, every `policy_delay`-th also an actor step and Polyak targets →
            broadcast the actor
"""

from __future__ import annotations

import copy
from collections.abc import Mapping
from typing import Any

import gymnasium as gym
import torch

from kuberl.core.continuous import (
    ActionScaler,
    DeterministicActor,
    QEnsemble,
    UpdateBudget,
    action_dims,
    clip_grads,
    make_adam,
    make_replay,
)
from kuberl.core.learner import load_state_dicts, select_device, state_dicts
from kuberl.core.models import obs_dim
from kuberl.core.nstep import DISCOUNTS
from kuberl.core.offpolicy_algorithm import DeterministicActorAlgorithm
from kuberl.core.replay import WEIGHTS
from kuberl.core.sample_batch import Columns
from kuberl.core.target import polyak_update
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


# The learner's networks and optimizers, by attribute name: its checkpoint layout.
STATE_PARTS = ("actor", "critic", "target_actor", "target_critic", "actor_opt", "critic_opt")


class TD3Learner:
    def __init__(
        self, obs_space: gym.Space[Any], action_space: gym.Space[Any], config: TD3Config, device: torch.device
    ) -> None:
        if not isinstance(action_space, gym.spaces.Box):
            raise ValueError(f"TD3 needs continuous (Box) actions, got {action_space}; use SAC or DQN")
        self.config = config
        self.device = device
        n_obs = obs_dim(obs_space)
        n_act, _ = action_dims(action_space)
        self.scaler = ActionScaler(action_space).to(device)
        self.actor = DeterministicActor(n_obs, n_act, config.model).to(device)
        self.critic = QEnsemble(
            n_obs, n_act, config.model, members=2 if config.twin_q else 1, discrete=False
        ).to(device)
        self.target_actor = copy.deepcopy(self.actor).requires_grad_(False)
        self.target_critic = copy.deepcopy(self.critic).requires_grad_(False)
        self.actor_opt = make_adam(self.actor.parameters(), config.actor_lr or config.lr)
        self.critic_opt = make_adam(self.critic.parameters(), config.critic_lr or config.lr)
        self.gen = torch.Generator(device=device)
        self.num_updates = 0

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
        self.critic_opt.zero_grad(set_to_none=True)
        terms["critic_loss"].backward()
        clip_grads(self.critic.parameters(), cfg.grad_clip)
        self.critic_opt.step()
        self.num_updates += 1

        if self.num_updates % cfg.policy_delay == 0:  # delayed policy and target updates
            terms |= actor_loss(self.critic(obs, self.actor(obs))[0])
            self.actor_opt.zero_grad(set_to_none=True)
            terms["actor_loss"].backward()
            clip_grads(self.actor.parameters(), cfg.grad_clip)
            self.actor_opt.step()
            polyak_update(self.target_critic, self.critic, cfg.tau)
            polyak_update(self.target_actor, self.actor, cfg.tau)
        out = {k: v.detach() for k, v in terms.items()}
        out["q_mean"] = q.detach().mean()
        out["target_q_mean"] = target.mean()
        return out

    def get_state(self) -> dict[str, Any]:
        return {
            **state_dicts(self, STATE_PARTS),
            "gen": self.gen.get_state(),
            "num_updates": self.num_updates,
        }

    def set_state(self, state: Mapping[str, Any]) -> None:
        load_state_dicts(self, state, STATE_PARTS)
        self.gen.set_state(state["gen"])
        self.num_updates = int(state["num_updates"])


# ---------------------------------------------------------------------------------------------------
# Training step
# ---------------------------------------------------------------------------------------------------


class TD3(DeterministicActorAlgorithm):
    name = "TD3"
    config: TD3Config

    def setup(self) -> None:
        res = self.spec.resources
        device = select_device(res.gpus_per_learner, cpus_per_learner=res.cpus_per_learner)
        self.learner = TD3Learner(self.obs_space, self.action_space, self.config, device)
        self.learner.gen.manual_seed(self.spec.seed or 0)
        self.buffer = make_replay(self.config.replay_buffer_config, seed=self.spec.seed)
        self.budget = UpdateBudget(self.config.gradient_steps_per_env_step())
