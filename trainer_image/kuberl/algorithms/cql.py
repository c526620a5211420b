"""Conservative Q-Learning (Kumar et al. 2020, https://arxiv.org/abs/2006.04779), CQL(H) on SAC for
continuous actions, trained from recorded experience only.

Reads top to bottom like the paper's Algorithm 1:
  config  → `CQLConfig` (kuberl.spec.algorithms.cql; RLlib names accepted)
  data    → `spec.input` through Ray Data: shuffled (s, a, r, s', terminated) rows
  network → tanh-squashed Gaussian actor, twin critics as one batched ensemble, Polyak target critics,
            log α (kuberl.algorithms.families.continuous, kuberl.core.target)
  loss    → critic: SAC's soft Bellman residual + min_q_weight · (logsumexp_a Q(s,a) − Q(s,a_data)),
            the log-sum-exp estimated by importance sampling from uniform and policy actions
            (`conservative_penalty`); actor: SAC's E[α log π − min Q] (or behaviour cloning for the
            first bc_iters steps); SAC's temperature loss. SAC's pieces (target, Bellman residual,
            actor and α losses, checkpoint layout) are kuberl.algorithms.families.soft_actor_critic, shared with SAC.
  step    → `OfflineAlgorithm.training_step`: updatesPerIteration minibatches of trainBatchSize rows
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

import gymnasium as gym
import numpy as np
import torch

from kuberl.algorithms.families.continuous import SquashedGaussianPolicy
from kuberl.algorithms.families.offline import OfflineAlgorithm
from kuberl.algorithms.families.soft_actor_critic import (
    SoftActorCriticLearner,
    actor_loss,
    alpha_loss,
    critic_loss,
    soft_q_target,
    soft_value,
)
from kuberl.core.learner import select_device
from kuberl.core.models import obs_dim
from kuberl.core.networks import ActionScaler, SquashedGaussianActor, action_dims
from kuberl.core.offline.schema import C
from kuberl.core.policy import PolicyFactory
from kuberl.core.target import polyak_update
from kuberl.spec.algorithms.cql import CQLConfig

# ---------------------------------------------------------------------------------------------------
# Losses
# ---------------------------------------------------------------------------------------------------

_LOG_2 = math.log(2.0)


def conservative_penalty(
    q_data: torch.Tensor,
    q_random: torch.Tensor,
    random_logp: float,
    q_pi: torch.Tensor,
    logp_pi: torch.Tensor,
    q_next_pi: torch.Tensor,
    logp_next_pi: torch.Tensor,
    *,
    temperature: float,
) -> torch.Tensor:
    """Per critic: E_s[T·log Σ_a exp(Q(s,a)/T)] − E_data[Q(s,a)], shape [E].

    The log-sum-exp over actions is estimated by importance sampling (the CQL paper's appendix F):
    N uniform actions (density exp(random_logp)) and N actions each from π(·|s) and π(·|s'), every
    Q divided by its proposal's density. q_*: [E, B, N]; logp_*: [B, N]; q_data: [E, B].
    """
    cat = torch.cat(
        [q_random - random_logp, q_pi - logp_pi.unsqueeze(0), q_next_pi - logp_next_pi.unsqueeze(0)], dim=-1
    )
    lse = torch.logsumexp(cat / temperature, dim=-1) * temperature  # [E, B]
    return lse.mean(-1) - q_data.mean(-1)


# ---------------------------------------------------------------------------------------------------
# Learner
# ---------------------------------------------------------------------------------------------------


class CQLLearner(SoftActorCriticLearner[CQLConfig]):
    actor: SquashedGaussianActor

    def __init__(
        self, obs_space: gym.Space[Any], action_space: gym.Space[Any], config: CQLConfig, device: torch.device
    ) -> None:
        n_act, discrete = action_dims(action_space)
        if discrete or not isinstance(action_space, gym.spaces.Box):
            raise ValueError(
                f"CQL here is the continuous-action variant; the env's action space is {action_space}"
            )
        self.n_act = n_act
        self.scaler = ActionScaler(action_space).to(device)
        n_obs = obs_dim(obs_space)
        actor = SquashedGaussianActor(n_obs, n_act, config.model)
        super().__init__(config, actor, n_obs=n_obs, n_act=n_act, discrete=False, device=device)
        self.target_entropy = (
            -float(n_act) if config.target_entropy == "auto" else float(config.target_entropy)
        )
        self.gen = torch.Generator(device=device)

    def _repeat(self, obs: torch.Tensor) -> torch.Tensor:
        return obs.repeat_interleave(self.config.num_actions, dim=0)

    def update(self, mb: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        cfg = self.config
        obs, next_obs = mb[C.OBS], mb[C.NEXT_OBS]
        actions = self.scaler.from_env(mb[C.ACTIONS])
        alpha = self.log_alpha.detach().exp()
        B, N = obs.shape[0], cfg.num_actions

        # Critic: the soft Bellman residual plus the conservative penalty. One actor pass samples a' for
        # the target and N actions each at s and s' for the penalty; one critic pass evaluates the data
        # actions and all 3N proposals at s (small networks: the number of calls, not FLOPs, is the cost).
        obs_n, next_obs_n = self._repeat(obs), self._repeat(next_obs)
        with torch.no_grad():
            sampled, sampled_logp = self.actor.sample(torch.cat([next_obs, obs_n, next_obs_n]), self.gen)
            next_a, pi_a, next_pi_a = sampled.split([B, B * N, B * N])
            next_logp, logp_pi, logp_next_pi = sampled_logp.split([B, B * N, B * N])
            next_v = soft_value(self.target_critic(next_obs, next_a), next_logp, alpha)
            target = soft_q_target(mb[C.REWARDS], cfg.gamma, mb[C.TERMINATEDS], next_v)
        uniform = torch.rand((B * N, self.n_act), generator=self.gen, device=self.device) * 2.0 - 1.0
        q_all = self.critic(
            torch.cat([obs, obs_n, obs_n, obs_n]), torch.cat([actions, uniform, pi_a, next_pi_a])
        )
        q_data = q_all[:, :B]
        q_random, q_pi, q_next_pi = (q.reshape(-1, B, N) for q in q_all[:, B:].split(B * N, dim=1))
        bellman = critic_loss(q_data, target)["critic_loss"]
        penalty = conservative_penalty(
            q_data,
            q_random,
            -self.n_act * _LOG_2,  # log density of the uniform distribution on [-1, 1]^d
            q_pi,
            logp_pi.view(B, N),
            q_next_pi,
            logp_next_pi.view(B, N),
            temperature=cfg.temperature,
        )
        conservative_loss = bellman + cfg.min_q_weight * penalty.sum()
        self.critic_step(conservative_loss)

        # Actor: imitate the data for bc_iters steps, then SAC's objective against the critics.
        # (SAC's actor loss with log π(a_data|s) in place of Q: maximum likelihood plus entropy).
        a_pi, logp = self.actor.sample(obs, self.gen)
        if self.num_updates < cfg.bc_iters:
            terms = actor_loss(logp, self.actor.log_prob(obs, actions), alpha)
        else:
            terms = actor_loss(logp, self.critic(obs, a_pi).min(0).values, alpha)
        self.step(terms["actor_loss"])

        terms |= alpha_loss(self.log_alpha, -logp, self.target_entropy)
        self.alpha_step(terms["alpha_loss"])
        polyak_update(self.target_critic, self.critic, cfg.tau)
        self.num_updates += 1
        return {
            "critic_loss": conservative_loss.detach(),
            "bellman_loss": bellman.detach(),
            "cql_penalty": penalty.detach().mean(),
            "actor_loss": terms["actor_loss"].detach(),
            "alpha_loss": terms["alpha_loss"].detach(),
            "alpha": alpha,
            "q_mean": q_data.detach().mean(),
            "entropy": -logp.detach().mean(),
        }

    @torch.no_grad()
    def logp(self, obs: np.ndarray, actions: np.ndarray) -> np.ndarray:
        """log π(a|s) in the env's action units: the [-1, 1] density less log|scale| (the Jacobian)."""
        x = torch.as_tensor(obs, device=self.device)
        a = self.scaler.from_env(torch.as_tensor(actions, device=self.device).reshape(len(x), -1))
        out = self.actor.log_prob(x, a) - torch.log(self.scaler.scale).sum()
        return np.asarray(out.cpu().numpy(), dtype=np.float64)

    def get_state(self) -> dict[str, Any]:
        return {**super().get_state(), "gen": self.gen.get_state()}

    def set_state(self, state: Mapping[str, Any]) -> None:
        super().set_state(state)
        self.gen.set_state(state["gen"])


# ---------------------------------------------------------------------------------------------------
# Training step
# ---------------------------------------------------------------------------------------------------


class CQL(OfflineAlgorithm[CQLConfig]):
    name = "CQL"
    learner: CQLLearner
    data_columns = (C.OBS, C.ACTIONS, C.REWARDS, C.NEXT_OBS, C.TERMINATEDS)

    def setup_learner(self) -> None:
        res = self.spec.resources
        device = select_device(res.gpus_per_learner, cpus_per_learner=res.cpus_per_learner)
        self.learner = CQLLearner(self.obs_space, self.action_space, self.config, device)
        if self.spec.seed is not None:
            self.learner.gen.manual_seed(self.spec.seed)

    def update(self, batch: dict[str, np.ndarray]) -> dict[str, float]:
        mb = {k: torch.as_tensor(v, device=self.learner.device) for k, v in batch.items()}
        if mb[C.ACTIONS].dim() == 1:
            mb[C.ACTIONS] = mb[C.ACTIONS].unsqueeze(-1)
        return {k: float(v) for k, v in self.learner.update(mb).items()}

    def target_logp(self, obs: np.ndarray, actions: np.ndarray) -> np.ndarray | None:
        return self.learner.logp(obs, actions)

    def policy_module(self) -> torch.nn.Module:
        return self.learner.actor

    def inference_policy_factory(self) -> PolicyFactory:
        # Its env runner only gives the spaces and never acts; the actor is SAC's squashed Gaussian.
        return SquashedGaussianPolicy

    def inference_options(self) -> dict[str, Any]:
        return {"random_actions": False}

    def get_weights(self) -> dict[str, np.ndarray]:
        return {k: v.detach().cpu().numpy() for k, v in self.learner.actor.state_dict().items()}
