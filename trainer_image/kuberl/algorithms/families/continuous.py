"""Networks and runner policies shared by the off-policy actor-critics (SAC, TD3, DDPG).

- `MLPEnsemble`: E independent MLPs evaluated with one batched matmul per layer, so twin critics cost
  one forward/backward instead of two (the Python and dispatch overhead, not the FLOPs, dominates
  networks this small on a CPU).
- `QEnsemble`: E critics Q(s, a) (continuous) or Q(s, ·) (discrete).
- `DeterministicActor` (TD3, DDPG) and `SquashedGaussianActor` (SAC): both act in the normalised space
  [-1, 1]; `ActionScaler` maps to and from the env's Box bounds, so targets, noise and entropy are in
  the same units whatever the bounds (as Stable-Baselines3 does).
- `DeterministicActorPolicy`, `SquashedGaussianPolicy`, `CategoricalPolicy`: the runner side (see
  kuberl.core.policy), with uniform random warm-up actions and exploration noise.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Callable, Iterable, Iterator
from typing import Any, ClassVar

import gymnasium as gym
import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

from kuberl.core.models import flatten_obs, obs_dim
from kuberl.core.policy import PolicyBase
from kuberl.core.replay import PrioritizedReplayBuffer, ReplayBuffer
from kuberl.core.sample_batch import Columns
from kuberl.spec.algorithms import ModelConfig
from kuberl.spec.algorithms.offpolicy_actor_critic import OffPolicyReplayConfig

_ACTIVATIONS: dict[str, Callable[[torch.Tensor], torch.Tensor]] = {
    "tanh": torch.tanh,
    "relu": F.relu,
    "elu": F.elu,
    "silu": F.silu,
}


# ---------------------------------------------------------------------------------------------------
# Networks
# ---------------------------------------------------------------------------------------------------


class MLPEnsemble(nn.Module):
    """E MLPs with the same shape, weights stacked as [E, in, out]. Initialised like nn.Linear
    (uniform ±1/√fan_in), which is what SB3's and the papers' SAC/TD3 use."""

    def __init__(self, sizes: list[int], *, members: int, activation: str) -> None:
        super().__init__()
        self.members = members
        self.act = _ACTIVATIONS[activation]
        self.weights = nn.ParameterList()
        self.biases = nn.ParameterList()
        for n_in, n_out in itertools.pairwise(sizes):
            bound = 1.0 / math.sqrt(n_in)
            self.weights.append(nn.Parameter(torch.empty(members, n_in, n_out).uniform_(-bound, bound)))
            self.biases.append(nn.Parameter(torch.empty(members, 1, n_out).uniform_(-bound, bound)))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """x: [B, in] (shared by all members) or [E, B, in] → [E, B, out]."""
        h = x.expand(self.members, *x.shape) if x.dim() == 2 else x
        last = len(self.weights) - 1
        for i, (w, b) in enumerate(zip(self.weights, self.biases, strict=True)):
            h = torch.baddbmm(b, h, w)
            if i < last:
                h = self.act(h)
        return h


class QEnsemble(nn.Module):
    """E critics. Continuous: Q(s, a) from the concatenated [s, a] → [E, B]. Discrete: Q(s, ·) → [E, B, n]."""

    def __init__(self, n_obs: int, n_act: int, config: ModelConfig, *, members: int, discrete: bool) -> None:
        super().__init__()
        self.discrete = discrete
        n_in = n_obs if discrete else n_obs + n_act
        n_out = n_act if discrete else 1
        self.net = MLPEnsemble(
            [n_in, *config.fcnet_hiddens, n_out], members=members, activation=config.fcnet_activation
        )

    def forward(self, obs: torch.Tensor, actions: torch.Tensor | None = None) -> torch.Tensor:
        if self.discrete:
            return self.net(obs)
        assert actions is not None
        return self.net(torch.cat([obs, actions], dim=-1)).squeeze(-1)


def _mlp(sizes: list[int], activation: str) -> nn.Sequential:
    layers: list[nn.Module] = []
    act = {"tanh": nn.Tanh, "relu": nn.ReLU, "elu": nn.ELU, "silu": nn.SiLU}[activation]
    for i, (a, b) in enumerate(itertools.pairwise(sizes)):
        layers.append(nn.Linear(a, b))
        if i < len(sizes) - 2:
            layers.append(act())
    return nn.Sequential(*layers)


class DeterministicActor(nn.Module):
    """μ(s) = tanh(MLP(s)) in [-1, 1] (TD3, DDPG)."""

    def __init__(self, n_obs: int, n_act: int, config: ModelConfig) -> None:
        super().__init__()
        self.net = _mlp([n_obs, *config.fcnet_hiddens, n_act], config.fcnet_activation)

    def forward(self, obs: torch.Tensor) -> torch.Tensor:
        return torch.tanh(self.net(obs))


LOG_STD_MIN, LOG_STD_MAX = -20.0, 2.0
_LOG_2PI = math.log(2.0 * math.pi)
_LOG_2 = math.log(2.0)


class SquashedGaussianActor(nn.Module):
    """a = tanh(u), u ~ N(μ(s), σ(s)) (SAC): the log-likelihood carries the tanh change of variables,
    log π(a|s) = log N(u) − Σ log(1 − tanh²u), written as 2(log 2 − u − softplus(−2u)) for stability."""

    def __init__(self, n_obs: int, n_act: int, config: ModelConfig) -> None:
        super().__init__()
        self.net = _mlp([n_obs, *config.fcnet_hiddens, 2 * n_act], config.fcnet_activation)

    def forward(self, obs: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        mean, log_std = self.net(obs).chunk(2, dim=-1)
        return mean, log_std.clamp(LOG_STD_MIN, LOG_STD_MAX)

    def sample(
        self, obs: torch.Tensor, generator: torch.Generator | None = None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Reparameterised sample in [-1, 1] and its log-probability [B]."""
        mean, log_std = self(obs)
        eps = torch.randn(mean.shape, generator=generator, device=mean.device)
        u = mean + eps * log_std.exp()
        logp = (-0.5 * eps.pow(2) - log_std - 0.5 * _LOG_2PI).sum(-1)
        logp = logp - (2.0 * (_LOG_2 - u - F.softplus(-2.0 * u))).sum(-1)
        return torch.tanh(u), logp

    def log_prob(self, obs: torch.Tensor, actions: torch.Tensor) -> torch.Tensor:
        """log π(a|s) [B] of given actions in [-1, 1] (u = atanh a, clamped off ±1 where it is infinite):
        what CQL's behaviour-cloning warm-up maximises and its off-policy estimates weigh by."""
        mean, log_std = self(obs)
        a = actions.clamp(-1.0 + 1e-6, 1.0 - 1e-6)
        u = torch.atanh(a)
        z = (u - mean) * torch.exp(-log_std)
        logp = (-0.5 * z.pow(2) - log_std - 0.5 * _LOG_2PI).sum(-1)
        return logp - (2.0 * (_LOG_2 - u - F.softplus(-2.0 * u))).sum(-1)

    def deterministic(self, obs: torch.Tensor) -> torch.Tensor:
        return torch.tanh(self(obs)[0])


class CategoricalActor(nn.Module):
    """Logits over n discrete actions (discrete SAC)."""

    def __init__(self, n_obs: int, n_act: int, config: ModelConfig) -> None:
        super().__init__()
        self.net = _mlp([n_obs, *config.fcnet_hiddens, n_act], config.fcnet_activation)

    def forward(self, obs: torch.Tensor) -> torch.Tensor:
        return self.net(obs)


class ActionScaler:
    """Maps actions between the actor's [-1, 1] and the env's Box [low, high]."""

    def __init__(self, space: gym.spaces.Box) -> None:
        low = np.asarray(space.low, dtype=np.float32).reshape(-1)
        high = np.asarray(space.high, dtype=np.float32).reshape(-1)
        if not (np.all(np.isfinite(low)) and np.all(np.isfinite(high))):
            raise ValueError(f"action space {space} must have finite bounds for a squashed (tanh) actor")
        self.scale = torch.as_tensor((high - low) / 2.0)
        self.center = torch.as_tensor((high + low) / 2.0)

    def to(self, device: torch.device) -> ActionScaler:
        self.scale, self.center = self.scale.to(device), self.center.to(device)
        return self

    def to_env(self, a: torch.Tensor) -> torch.Tensor:
        return a * self.scale + self.center

    def from_env(self, a: torch.Tensor) -> torch.Tensor:
        return ((a - self.center) / self.scale).clamp(-1.0, 1.0)


def action_dims(space: gym.Space[Any]) -> tuple[int, bool]:
    """(number of action dimensions or discrete actions, discrete?)."""
    if isinstance(space, gym.spaces.Discrete):
        return int(space.n), True
    if isinstance(space, gym.spaces.Box):
        return int(np.prod(space.shape)), False
    raise TypeError(f"action space {space} is not supported (Discrete and Box are)")


def clip_grads(params: Iterable[torch.Tensor], max_norm: float | None) -> None:
    if max_norm is not None:
        nn.utils.clip_grad_norm_(list(params), max_norm)


def obs_tensor(space: gym.Space[Any], obs: np.ndarray, device: torch.device) -> tuple[torch.Tensor, bool]:
    """Raw observation(s) → flat float tensor [B, d], and whether a single observation was given."""
    raw = np.asarray(obs)
    single = raw.shape == (space.shape or ())
    if single:
        raw = raw[None]
    return torch.as_tensor(flatten_obs(space, raw), device=device), single


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
    bounds (TD3, DDPG). Options: exploration (an ExplorationConfig dict); per sync: random_actions,
    noise_scale. The OU state is per sub-environment and persists across episodes."""

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
        self.noise_scale = 1.0
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
        self.noise_scale = float(options.get("noise_scale", self.noise_scale))


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
