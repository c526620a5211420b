"""The networks of the off-policy actor-critics (SAC, CQL, TD3, DDPG), as plain torch modules.

- `MLPEnsemble`: E independent MLPs evaluated with one batched matmul per layer, so twin critics cost
  one forward/backward instead of two (the Python and dispatch overhead, not the FLOPs, dominates
  networks this small on a CPU).
- `QEnsemble`: E critics Q(s, a) (continuous) or Q(s, ·) (discrete).
- `DeterministicActor` (TD3, DDPG), `SquashedGaussianActor` (SAC, CQL) and `CategoricalActor`
  (discrete SAC): the continuous ones act in the normalised space [-1, 1]; `ActionScaler` maps to and
  from the env's Box bounds, so targets, noise and entropy are in the same units whatever the bounds
  (as Stable-Baselines3 does).
- `NoisyLinear` (with `reset_noise`, `set_noisy`): the factorised-Gaussian noisy layer of noisy nets,
  used by the Q-learning family's Q head.

The on-policy actor-critic and Q networks are in kuberl.core.models.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Callable
from typing import Any

import gymnasium as gym
import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

from kuberl.core.models import flatten_obs
from kuberl.spec.algorithms import ModelConfig

_ACTIVATIONS: dict[str, Callable[[torch.Tensor], torch.Tensor]] = {
    "tanh": torch.tanh,
    "relu": F.relu,
    "elu": F.elu,
    "silu": F.silu,
}


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

    def forward(self, x: torch.Tensor, *, frozen: bool = False, members: int | None = None) -> torch.Tensor:
        """x: [B, in] (shared by all members) or [E, B, in] → [E, B, out].

        `frozen`: the weights enter as constants, so backward computes gradients for the input only (an
        actor's loss through its critics would otherwise also compute the critics' weight gradients, a
        third of that backward's matrix products, only for the next critic step to discard them).
        `members`: evaluate only the first that many members (TD3's actor loss reads Q₁ alone)."""
        n = self.members if members is None else members
        h = x.expand(n, *x.shape) if x.dim() == 2 else x
        last = len(self.weights) - 1
        for i, (w, b) in enumerate(zip(self.weights, self.biases, strict=True)):
            if members is not None:
                w, b = w[:members], b[:members]
            if frozen:
                w, b = w.detach(), b.detach()
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

    def forward(
        self,
        obs: torch.Tensor,
        actions: torch.Tensor | None = None,
        *,
        frozen: bool = False,
        members: int | None = None,
    ) -> torch.Tensor:
        """`frozen` and `members` as in MLPEnsemble.forward: an actor's loss evaluates the critics as a
        fixed function of the actions."""
        if self.discrete:
            return self.net(obs, frozen=frozen, members=members)
        assert actions is not None
        return self.net(torch.cat([obs, actions], dim=-1), frozen=frozen, members=members).squeeze(-1)


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


def obs_tensor(space: gym.Space[Any], obs: np.ndarray, device: torch.device) -> tuple[torch.Tensor, bool]:
    """Raw observation(s) → flat float tensor [B, d], and whether a single observation was given."""
    raw = np.asarray(obs)
    single = raw.shape == (space.shape or ())
    if single:
        raw = raw[None]
    return torch.as_tensor(flatten_obs(space, raw), device=device), single


class NoisyLinear(nn.Module):
    """A linear layer with learned factorised Gaussian noise on its weights and biases (Fortunato et al.
    2018, https://arxiv.org/abs/1706.10295, §3.2): w = μ_w + σ_w ⊙ f(ε_out) f(ε_in)ᵀ, b = μ_b + σ_b ⊙
    f(ε_out), f(x) = sgn(x)·√|x|, initialised μ ~ U(±1/√p), σ = σ0/√p. The noise is drawn by
    `reset_noise` (the paper: before each action choice and for each learner update), not per forward,
    so the online and target passes of one update each see one fixed network. With `noisy = False` the
    layer is its mean (greedy evaluation). The noise buffers are not persistent: the state dict holds only
    the learned μ and σ."""

    eps_in: torch.Tensor
    eps_out: torch.Tensor

    def __init__(self, n_in: int, n_out: int, *, sigma0: float) -> None:
        super().__init__()
        bound = 1.0 / math.sqrt(n_in)
        self.weight_mu = nn.Parameter(torch.empty(n_out, n_in).uniform_(-bound, bound))
        self.weight_sigma = nn.Parameter(torch.full((n_out, n_in), sigma0 / math.sqrt(n_in)))
        self.bias_mu = nn.Parameter(torch.empty(n_out).uniform_(-bound, bound))
        self.bias_sigma = nn.Parameter(torch.full((n_out,), sigma0 / math.sqrt(n_in)))
        self.register_buffer("eps_in", torch.zeros(n_in), persistent=False)
        self.register_buffer("eps_out", torch.zeros(n_out), persistent=False)
        self.noisy = True

    def reset_noise(self, generator: torch.Generator | None = None) -> None:
        def f(n: int) -> torch.Tensor:
            x = torch.randn(n, generator=generator).to(self.weight_mu.device)
            return x.sign() * x.abs().sqrt()

        self.eps_in.copy_(f(self.eps_in.shape[0]))
        self.eps_out.copy_(f(self.eps_out.shape[0]))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.noisy:
            return F.linear(x, self.weight_mu, self.bias_mu)
        weight = self.weight_mu + self.weight_sigma * torch.outer(self.eps_out, self.eps_in)
        return F.linear(x, weight, self.bias_mu + self.bias_sigma * self.eps_out)


def reset_noise(module: nn.Module, generator: torch.Generator | None = None) -> None:
    """New noise in every NoisyLinear of `module` (none: nothing happens)."""
    for m in module.modules():
        if isinstance(m, NoisyLinear):
            m.reset_noise(generator)


def set_noisy(module: nn.Module, noisy: bool) -> None:
    """Every NoisyLinear of `module` noisy (exploring, learning) or at its mean (greedy)."""
    for m in module.modules():
        if isinstance(m, NoisyLinear):
            m.noisy = noisy
