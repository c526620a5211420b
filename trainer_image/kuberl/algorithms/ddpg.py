"""Deep Deterministic Policy Gradient (Lillicrap et al. 2016, https://arxiv.org/abs/1509.02971),
continuous actions. TD3 (kuberl.algorithms.td3) without its three changes: one critic, no target
policy smoothing, the actor and targets updated with every critic step.

Reads top to bottom like the paper's Algorithm 1:
  config  → `DDPGConfig` (kuberl.spec.algorithms.ddpg; every field documented there, RLlib names accepted)
  network → deterministic tanh actor, one critic, target copies of both (kuberl.core.continuous), in
            the actor's [-1, 1] action space
  loss    → `ddpg_target` (r + γ Q'(s', μ'(s'))), `critic_loss`, `actor_loss` (−Q(s, μ(s)))
  step    → `DDPG.training_step`: sample (Gaussian or Ornstein-Uhlenbeck noise in the runners) → n-step
            transitions into replay → k steps of critic, actor and Polyak targets → broadcast the actor
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


# The learner's networks and optimizers, by attribute name: its checkpoint layout.
STATE_PARTS = ("actor", "critic", "target_actor", "target_critic", "actor_opt", "critic_opt")


class DDPGLearner:
    def __init__(
        self,
        obs_space: gym.Space[Any],
        action_space: gym.Space[Any],
        config: DDPGConfig,
        device: torch.device,
    ) -> None:
        if not isinstance(action_space, gym.spaces.Box):
            raise ValueError(f"DDPG needs continuous (Box) actions, got {action_space}; use SAC or DQN")
        self.config = config
        self.device = device
        n_obs = obs_dim(obs_space)
        n_act, _ = action_dims(action_space)
        self.scaler = ActionScaler(action_space).to(device)
        self.actor = DeterministicActor(n_obs, n_act, config.model).to(device)
        self.critic = QEnsemble(n_obs, n_act, config.model, members=1, discrete=False).to(device)
        self.target_actor = copy.deepcopy(self.actor).requires_grad_(False)
        self.target_critic = copy.deepcopy(self.critic).requires_grad_(False)
        self.actor_opt = make_adam(self.actor.parameters(), config.actor_lr or config.lr)
        self.critic_opt = make_adam(self.critic.parameters(), config.critic_lr or config.lr)
        self.num_updates = 0

    def update(self, mb: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        cfg = self.config
        obs, next_obs = mb[Columns.OBS], mb[Columns.NEXT_OBS]
        with torch.no_grad():
            target = ddpg_target(mb, self.target_critic(next_obs, self.target_actor(next_obs)))
        q = self.critic(obs, self.scaler.from_env(mb[Columns.ACTIONS]))
        terms = critic_loss(q, target, mb[WEIGHTS])
        self.critic_opt.zero_grad(set_to_none=True)
        terms["critic_loss"].backward()
        clip_grads(self.critic.parameters(), cfg.grad_clip)
        self.critic_opt.step()
        self.num_updates += 1

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
            "num_updates": self.num_updates,
        }

    def set_state(self, state: Mapping[str, Any]) -> None:
        load_state_dicts(self, state, STATE_PARTS)
        self.num_updates = int(state["num_updates"])


# ---------------------------------------------------------------------------------------------------
# Training step
# ---------------------------------------------------------------------------------------------------


class DDPG(DeterministicActorAlgorithm):
    name = "DDPG"
    config: DDPGConfig

    def setup(self) -> None:
        res = self.spec.resources
        device = select_device(res.gpus_per_learner, cpus_per_learner=res.cpus_per_learner)
        self.learner = DDPGLearner(self.obs_space, self.action_space, self.config, device)
        self.buffer = make_replay(self.config.replay_buffer_config, seed=self.spec.seed)
        self.budget = UpdateBudget(self.config.gradient_steps_per_env_step())
