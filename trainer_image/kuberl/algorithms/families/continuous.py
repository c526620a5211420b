"""What the off-policy actor-critics (SAC, TD3, DDPG) share besides their networks
(kuberl.core.networks): the replay plumbing (buffer choice, the update budget, minibatches) and the
runner policies `DeterministicActorPolicy`, `SquashedGaussianPolicy` and `CategoricalPolicy` (see
kuberl.core.policy), with uniform random warm-up actions and exploration noise.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any, ClassVar

import gymnasium as gym
import numpy as np
import torch
from torch import nn

from kuberl.core.models import obs_dim
from kuberl.core.networks import (
    ActionScaler,
    CategoricalActor,
    DeterministicActor,
    SquashedGaussianActor,
    action_dims,
)
from kuberl.core.policy import PolicyBase
from kuberl.core.replay import PrioritizedReplayBuffer, ReplayBuffer
from kuberl.core.sample_batch import Columns
from kuberl.spec.algorithms import ModelConfig
from kuberl.spec.algorithms.offpolicy_actor_critic import OffPolicyReplayConfig

# ---------------------------------------------------------------------------------------------------
# Replay plumbing
# ---------------------------------------------------------------------------------------------------


def make_replay(config: OffPolicyReplayConfig, *, seed: int | None) -> ReplayBuffer:
    if config.type == "PrioritizedReplayBuffer":
        return PrioritizedReplayBuffer(
            config.capacity,
            alpha=config.prioritized_replay_alpha,
            beta=config.prioritized_replay_beta,
            eps=config.prioritized_replay_eps,
            seed=seed,
        )
    return ReplayBuffer(config.capacity, seed=seed)


class UpdateBudget:
    """Turns sampled env steps into gradient steps at a (possibly fractional) ratio; the remainder
    carries over to the next iteration so the long-run ratio is exact."""

    def __init__(self, per_step: float) -> None:
        self.per_step = per_step
        self.credit = 0.0

    def take(self, env_steps: int) -> int:
        self.credit += env_steps * self.per_step
        k = int(self.credit)
        self.credit -= k
        return k


def replay_batches(
    buffer: ReplayBuffer, *, count: int, size: int, device: torch.device
) -> Iterator[dict[str, torch.Tensor]]:
    """`count` minibatches as tensors. Uniform replay draws them all in one call (one numpy gather and
    one tensor conversion per column per iteration); prioritized replay draws each one after the
    previous update has written its priorities back."""
    if count <= 0:
        return
    if isinstance(buffer, PrioritizedReplayBuffer):
        for _ in range(count):
            yield {k: torch.as_tensor(v, device=device) for k, v in buffer.sample(size).items()}
        return
    big = {k: torch.as_tensor(v, device=device) for k, v in buffer.sample(count * size).items()}
    for i in range(count):
        yield {k: v[i * size : (i + 1) * size] for k, v in big.items()}


# ---------------------------------------------------------------------------------------------------
# Runner policies (built in each EnvRunner; see kuberl.core.policy.RunnerPolicy)
# ---------------------------------------------------------------------------------------------------


class _ActorPolicy(PolicyBase):
    """The off-policy actors' runner side: the actor (`actor_class` on `space_type` actions, scaled to
    Box bounds) is the policy's network; uniform random actions while the driver says `random_actions`
    (before learning starts), else the subclass's `actions`."""

    actor_class: ClassVar[type[DeterministicActor | SquashedGaussianActor | CategoricalActor]]
    space_type: ClassVar[type[gym.Space[Any]]] = gym.spaces.Box
    random_actions = True
    scaler: ActionScaler

    def build_module(
        self, obs_space: gym.Space[Any], model: ModelConfig, options: dict[str, Any]
    ) -> nn.Module:
        if not isinstance(self.action_space, self.space_type):
            raise TypeError(
                f"{type(self).__name__} needs {self.space_type.__name__} actions, got {self.action_space}"
            )
        n_act, _ = action_dims(self.action_space)
        self.actor = self.actor_class(obs_dim(obs_space), n_act, model)
        if isinstance(self.action_space, gym.spaces.Box):
            self.scaler = ActionScaler(self.action_space)
        return self.actor

    def act(self, obs: torch.Tensor, *, explore: bool, generator: torch.Generator) -> dict[str, torch.Tensor]:
        if explore and self.random_actions:
            return {Columns.ACTIONS: self._random(self.action_space, obs.shape[0], generator)}
        return {Columns.ACTIONS: self.actions(obs, explore=explore, generator=generator)}

    def actions(self, obs: torch.Tensor, *, explore: bool, generator: torch.Generator) -> torch.Tensor:
        raise NotImplementedError

    def _random(self, space: gym.Space[Any], batch: int, generator: torch.Generator) -> torch.Tensor:
        if isinstance(space, gym.spaces.Discrete):
            return torch.randint(int(space.n), (batch,), generator=generator) + int(space.start)
        assert isinstance(space, gym.spaces.Box)
        low = torch.as_tensor(space.low, dtype=torch.float32)
        high = torch.as_tensor(space.high, dtype=torch.float32)
        return low + torch.rand((batch, *low.shape), generator=generator) * (high - low)

    def set_options(self, options: dict[str, Any]) -> None:
        self.random_actions = bool(options.get("random_actions", self.random_actions))


class DeterministicActorPolicy(_ActorPolicy):
    """μ(s) plus Gaussian or Ornstein-Uhlenbeck noise in the [-1, 1] space, clipped, then scaled to the
    bounds (TD3, DDPG, APEX_DDPG). Options: exploration (an ExplorationConfig dict); per sync:
    random_actions, noise_scale (a number, or one per sub-env). The OU state is per sub-environment and persists across episodes."""

    actor_class = DeterministicActor

    def build_module(
        self, obs_space: gym.Space[Any], model: ModelConfig, options: dict[str, Any]
    ) -> nn.Module:
        actor = super().build_module(obs_space, model, options)
        expl = options.get("exploration", {})
        self.ou = expl.get("type") == "OrnsteinUhlenbeckNoise"
        self.stddev = float(expl.get("stddev", 0.1))
        self.ou_theta = float(expl.get("ou_theta", 0.15))
        self.ou_sigma = float(expl.get("ou_sigma", 0.2))
        self.ou_base_scale = float(expl.get("ou_base_scale", 0.1))
        self.noise_scale: float | torch.Tensor = 1.0
        self.ou_state: torch.Tensor | None = None
        return actor

    def actions(self, obs: torch.Tensor, *, explore: bool, generator: torch.Generator) -> torch.Tensor:
        a = self.actor(obs)
        if explore:
            if self.ou:
                if self.ou_state is None or self.ou_state.shape != a.shape:
                    self.ou_state = torch.zeros_like(a)
                gauss = torch.randn(a.shape, generator=generator)
                self.ou_state = self.ou_state + self.ou_theta * -self.ou_state + self.ou_sigma * gauss
                noise = self.ou_base_scale * self.ou_state
            else:
                noise = self.stddev * torch.randn(a.shape, generator=generator)
            a = (a + self.noise_scale * noise).clamp(-1.0, 1.0)
        return self.scaler.to_env(a)

    def set_options(self, options: dict[str, Any]) -> None:
        super().set_options(options)
        scale = options.get("noise_scale", self.noise_scale)
        if isinstance(scale, float | int):
            self.noise_scale = float(scale)
        else:  # one scale per sub-env (Ape-X DDPG's ladder): a [N, 1] column against [N, act] noise
            self.noise_scale = torch.as_tensor(np.asarray(scale), dtype=torch.float32).reshape(-1, 1)


class SquashedGaussianPolicy(_ActorPolicy):
    """SAC's runner side for Box actions: samples the squashed Gaussian (explore) or tanh(μ)."""

    actor_class = SquashedGaussianActor
    actor: SquashedGaussianActor

    def actions(self, obs: torch.Tensor, *, explore: bool, generator: torch.Generator) -> torch.Tensor:
        a = self.actor.sample(obs, generator)[0] if explore else self.actor.deterministic(obs)
        return self.scaler.to_env(a)


class CategoricalPolicy(_ActorPolicy):
    """Discrete SAC's runner side: samples the softmax policy (Gumbel-max) or takes its argmax."""

    actor_class = CategoricalActor
    space_type = gym.spaces.Discrete
    action_space: gym.spaces.Discrete

    def actions(self, obs: torch.Tensor, *, explore: bool, generator: torch.Generator) -> torch.Tensor:
        logits = self.actor(obs)
        if explore:
            u = torch.rand(logits.shape, generator=generator).clamp_(1e-10, 1.0)
            logits = logits - torch.log(-torch.log(u))
        return torch.argmax(logits, dim=-1) + int(self.action_space.start)
