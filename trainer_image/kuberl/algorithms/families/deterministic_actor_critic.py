"""The learner that TD3 and DDPG share: DDPG is TD3 with one critic, no target policy smoothing and no
policy delay, so everything but those three changes lives here, once. DDPG's own learner (`DDPGLearner`,
its target and losses) lives here too, because Ape-X DDPG (kuberl.algorithms.apex_ddpg) trains it as well.

`DeterministicActorCriticLearner` (a core `Learner`) holds a deterministic tanh actor, E critics as one
batched ensemble, target copies of both (kuberl.core.networks) and their optimizers, and offers the two
gradient steps of the paper's Algorithm 1 — `critic_step` and `actor_step` (the actor, then Polyak targets) — plus the
checkpoint. Each algorithm file keeps its target, its losses and an `update` written from these steps,
so it still reads like its paper.
"""

from __future__ import annotations

import copy
from collections.abc import Mapping
from typing import Any, ClassVar, Generic, TypeVar

import gymnasium as gym
import torch

from kuberl.core.learner import Learner, load_state_dicts, make_adam, state_dicts
from kuberl.core.models import obs_dim
from kuberl.core.networks import ActionScaler, DeterministicActor, QEnsemble, action_dims
from kuberl.core.replay import WEIGHTS
from kuberl.core.returns import DISCOUNTS
from kuberl.core.sample_batch import Columns
from kuberl.core.target import polyak_update
from kuberl.spec.algorithms.ddpg import DDPGConfig
from kuberl.spec.algorithms.offpolicy_actor_critic import OffPolicyActorCriticConfig

# The learner's networks and optimizers, by attribute name: its checkpoint layout.
STATE_PARTS = ("actor", "critic", "target_actor", "target_critic", "actor_opt", "critic_opt")


ConfigT = TypeVar("ConfigT", bound=OffPolicyActorCriticConfig)


class DeterministicActorCriticLearner(Learner, Generic[ConfigT]):
    """A `Learner` whose module is the actor μ(s), with Q_1..Q_E(s, a) and their targets, all in the
    actor's [-1, 1] action space. Subclasses name their `algorithm` (for errors) and may override
    `num_critics`."""

    algorithm: ClassVar[str]

    def __init__(
        self,
        obs_space: gym.Space[Any],
        action_space: gym.Space[Any],
        config: ConfigT,
        device: torch.device,
    ) -> None:
        if not isinstance(action_space, gym.spaces.Box):
            raise ValueError(
                f"{self.algorithm} needs continuous (Box) actions, got {action_space}; use SAC or DQN"
            )
        self.config = config
        n_obs = obs_dim(obs_space)
        n_act, _ = action_dims(action_space)
        members = self.num_critics()
        self.scaler = ActionScaler(action_space).to(device)
        # The actor first, then the critics: parameters initialise in this order.
        actor = DeterministicActor(n_obs, n_act, config.model)
        super().__init__(
            actor, lr=config.actor_lr or config.lr, grad_clip=config.grad_clip, device=device, adam_eps=1e-8
        )
        self.actor = actor
        self.critic = QEnsemble(n_obs, n_act, config.model, members=members, discrete=False).to(device)
        self.target_actor = copy.deepcopy(self.actor).requires_grad_(False)
        self.target_critic = copy.deepcopy(self.critic).requires_grad_(False)
        self.actor_opt = self.optimizer  # the checkpoint's name for the module's optimizer
        self.critic_opt = make_adam(self.critic.parameters(), lr=config.critic_lr or config.lr)
        self.num_updates = 0

    def num_critics(self) -> int:
        """How many critics the ensemble holds (DDPG: one); called once `config` is set."""
        return 1

    def update(self, mb: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """One gradient update on a replay minibatch: the detached loss terms (and `td_error` per
        sample for prioritized replay); counts `num_updates`."""
        raise NotImplementedError(f"{type(self).__name__} must define its update")

    def critic_step(self, loss: torch.Tensor) -> None:
        """One gradient step of the critics; counts the update (TD3's delay counts critic steps)."""
        self.step(loss, optimizer=self.critic_opt, params=self.critic.parameters())
        self.num_updates += 1

    def actor_step(self, loss: torch.Tensor) -> None:
        """One gradient step of the actor, then both targets move towards their networks by τ."""
        self.step(loss)
        polyak_update(self.target_critic, self.critic, self.config.tau)
        polyak_update(self.target_actor, self.actor, self.config.tau)

    @staticmethod
    def report(
        terms: Mapping[str, torch.Tensor], q: torch.Tensor, target: torch.Tensor
    ) -> dict[str, torch.Tensor]:
        """The loss terms and the mean of Q(s, a) and of its target, detached (synced once per
        iteration by the driver)."""
        out = {k: v.detach() for k, v in terms.items()}
        out["q_mean"] = q.detach().mean()
        out["target_q_mean"] = target.mean()
        return out

    def get_state(self) -> dict[str, Any]:
        return {**state_dicts(self, STATE_PARTS), "num_updates": self.num_updates}

    def set_state(self, state: Mapping[str, Any]) -> None:
        load_state_dicts(self, state, STATE_PARTS)
        self.num_updates = int(state["num_updates"])


# ---------------------------------------------------------------------------------------------------
# DDPG (Lillicrap et al. 2016): its target, losses and update (kuberl.algorithms.ddpg, .apex_ddpg)
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


DDPGConfigT = TypeVar("DDPGConfigT", bound=DDPGConfig)


class DDPGLearner(DeterministicActorCriticLearner[DDPGConfigT]):
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

    def td_errors(self, mb: Mapping[str, torch.Tensor]) -> torch.Tensor:
        """|Q(s, a) − y| per transition under the current critic and targets (no gradient step): the
        TD error `update` would see, e.g. as new transitions' replay priorities."""
        obs, next_obs = mb[Columns.OBS], mb[Columns.NEXT_OBS]
        with torch.no_grad():
            target = ddpg_target(mb, self.target_critic(next_obs, self.target_actor(next_obs)))
            q = self.critic(obs, self.scaler.from_env(mb[Columns.ACTIONS]))
        return (q[0] - target).abs()
