"""Action distributions as small functions of the network output.

Written with plain tensor ops rather than torch.distributions: sampling runs once per vector step in
every runner, where torch.distributions' argument validation and object construction cost more than
the tiny MLP forward itself.
"""

from __future__ import annotations

import math
from typing import Protocol

import torch
from torch.nn import functional as F

_LOG_2PI = math.log(2.0 * math.pi)


class ActionDistribution(Protocol):
    def sample(self, inputs: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor: ...
    def deterministic(self, inputs: torch.Tensor) -> torch.Tensor: ...
    def logp(self, inputs: torch.Tensor, actions: torch.Tensor) -> torch.Tensor: ...
    def entropy(self, inputs: torch.Tensor) -> torch.Tensor: ...
    def kl(self, old_inputs: torch.Tensor, new_inputs: torch.Tensor) -> torch.Tensor: ...


class Categorical:
    """Inputs are logits [B, n]."""

    def sample(self, inputs: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        # Gumbel-max: one uniform draw per logit, no normalisation needed.
        u = torch.rand(inputs.shape, generator=generator, device=inputs.device).clamp_(1e-10, 1.0)
        return torch.argmax(inputs - torch.log(-torch.log(u)), dim=-1)

    def deterministic(self, inputs: torch.Tensor) -> torch.Tensor:
        return torch.argmax(inputs, dim=-1)

    def logp(self, inputs: torch.Tensor, actions: torch.Tensor) -> torch.Tensor:
        return F.log_softmax(inputs, dim=-1).gather(-1, actions.long().unsqueeze(-1)).squeeze(-1)

    def entropy(self, inputs: torch.Tensor) -> torch.Tensor:
        logp = F.log_softmax(inputs, dim=-1)
        return -(logp.exp() * logp).sum(-1)

    def kl(self, old_inputs: torch.Tensor, new_inputs: torch.Tensor) -> torch.Tensor:
        old = F.log_softmax(old_inputs, dim=-1)
        new = F.log_softmax(new_inputs, dim=-1)
        return (old.exp() * (old - new)).sum(-1)


class DiagGaussian:
    """Inputs are [B, 2*d]: mean then log-std. Actions are unsquashed; the runner clips them to the bounds."""

    def _split(self, inputs: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        mean, log_std = torch.chunk(inputs, 2, dim=-1)
        return mean, log_std.clamp(-20.0, 2.0)

    def sample(self, inputs: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        mean, log_std = self._split(inputs)
        return mean + torch.randn(mean.shape, generator=generator, device=mean.device) * log_std.exp()

    def deterministic(self, inputs: torch.Tensor) -> torch.Tensor:
        return self._split(inputs)[0]

    def logp(self, inputs: torch.Tensor, actions: torch.Tensor) -> torch.Tensor:
        mean, log_std = self._split(inputs)
        z = (actions - mean) * torch.exp(-log_std)
        return (-0.5 * z.pow(2) - log_std - 0.5 * _LOG_2PI).sum(-1)

    def entropy(self, inputs: torch.Tensor) -> torch.Tensor:
        _, log_std = self._split(inputs)
        return (log_std + 0.5 * (1.0 + _LOG_2PI)).sum(-1)

    def kl(self, old_inputs: torch.Tensor, new_inputs: torch.Tensor) -> torch.Tensor:
        m0, s0 = self._split(old_inputs)
        m1, s1 = self._split(new_inputs)
        return (s1 - s0 + (torch.exp(2 * s0) + (m0 - m1).pow(2)) / (2.0 * torch.exp(2 * s1)) - 0.5).sum(-1)


class MultiCategorical:
    """One Categorical per MultiDiscrete dimension. Inputs are the dimensions' logits side by side
    [B, sum(nvec)]; actions are int64 [B, k]. Log-prob, entropy and KL are sums over the dimensions
    (they are independent given the observation), as in RLlib and Stable-Baselines3."""

    def __init__(self, nvec: list[int]) -> None:
        self.nvec = list(nvec)
        self._cat = Categorical()

    def _split(self, inputs: torch.Tensor) -> tuple[torch.Tensor, ...]:
        return torch.split(inputs, self.nvec, dim=-1)

    def sample(self, inputs: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        return torch.stack([self._cat.sample(x, generator) for x in self._split(inputs)], dim=-1)

    def deterministic(self, inputs: torch.Tensor) -> torch.Tensor:
        return torch.stack([torch.argmax(x, dim=-1) for x in self._split(inputs)], dim=-1)

    def logp(self, inputs: torch.Tensor, actions: torch.Tensor) -> torch.Tensor:
        parts = self._split(inputs)
        return torch.stack([self._cat.logp(x, actions[..., i]) for i, x in enumerate(parts)], dim=-1).sum(-1)

    def entropy(self, inputs: torch.Tensor) -> torch.Tensor:
        return torch.stack([self._cat.entropy(x) for x in self._split(inputs)], dim=-1).sum(-1)

    def kl(self, old_inputs: torch.Tensor, new_inputs: torch.Tensor) -> torch.Tensor:
        pairs = zip(self._split(old_inputs), self._split(new_inputs), strict=True)
        return torch.stack([self._cat.kl(o, n) for o, n in pairs], dim=-1).sum(-1)


class Bernoulli:
    """Independent bits (MultiBinary). Inputs are one logit per bit [B, k]; actions are int64 0/1 [B, k]."""

    def sample(self, inputs: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        u = torch.rand(inputs.shape, generator=generator, device=inputs.device)
        return (u < torch.sigmoid(inputs)).long()

    def deterministic(self, inputs: torch.Tensor) -> torch.Tensor:
        return (inputs > 0).long()

    def logp(self, inputs: torch.Tensor, actions: torch.Tensor) -> torch.Tensor:
        target = actions.to(inputs.dtype)
        return -F.binary_cross_entropy_with_logits(inputs, target, reduction="none").sum(-1)

    def entropy(self, inputs: torch.Tensor) -> torch.Tensor:
        p = torch.sigmoid(inputs)
        return F.binary_cross_entropy_with_logits(inputs, p, reduction="none").sum(-1)

    def kl(self, old_inputs: torch.Tensor, new_inputs: torch.Tensor) -> torch.Tensor:
        p = torch.sigmoid(old_inputs)
        # KL(p‖q) = cross-entropy(p, q) − entropy(p), per bit.
        cross = F.binary_cross_entropy_with_logits(new_inputs, p, reduction="none")
        own = F.binary_cross_entropy_with_logits(old_inputs, p, reduction="none")
        return (cross - own).sum(-1)


class Composite:
    """A product of independent component distributions (Tuple/Dict action spaces).

    `parts` are (distribution, input width, action width, scalar) per component in the space's order:
    the network's output is the components' inputs side by side, an action the components' actions side
    by side as float32 (kuberl.core.action_spaces); `scalar` marks a Categorical, whose action is one
    column. Log-prob, entropy and KL are sums over the components."""

    def __init__(self, parts: list[tuple[ActionDistribution, int, int, bool]]) -> None:
        self.parts = parts

    def _inputs(self, inputs: torch.Tensor) -> tuple[torch.Tensor, ...]:
        return torch.split(inputs, [p[1] for p in self.parts], dim=-1)

    def _actions(self, actions: torch.Tensor) -> list[torch.Tensor]:
        out = []
        for (_, _, _, scalar), a in zip(
            self.parts, torch.split(actions, [p[2] for p in self.parts], dim=-1), strict=True
        ):
            out.append(a[..., 0] if scalar else a)
        return out

    def _join(self, actions: list[torch.Tensor]) -> torch.Tensor:
        cols = [a.unsqueeze(-1) if p[3] else a for p, a in zip(self.parts, actions, strict=True)]
        return torch.cat([c.to(torch.float32) for c in cols], dim=-1)

    def sample(self, inputs: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        xs = self._inputs(inputs)
        return self._join([p[0].sample(x, generator) for p, x in zip(self.parts, xs, strict=True)])

    def deterministic(self, inputs: torch.Tensor) -> torch.Tensor:
        xs = self._inputs(inputs)
        return self._join([p[0].deterministic(x) for p, x in zip(self.parts, xs, strict=True)])

    def logp(self, inputs: torch.Tensor, actions: torch.Tensor) -> torch.Tensor:
        xs, acts = self._inputs(inputs), self._actions(actions)
        return sum_all([p[0].logp(x, a) for p, x, a in zip(self.parts, xs, acts, strict=True)])

    def entropy(self, inputs: torch.Tensor) -> torch.Tensor:
        return sum_all([p[0].entropy(x) for p, x in zip(self.parts, self._inputs(inputs), strict=True)])

    def kl(self, old_inputs: torch.Tensor, new_inputs: torch.Tensor) -> torch.Tensor:
        pairs = zip(self.parts, self._inputs(old_inputs), self._inputs(new_inputs), strict=True)
        return sum_all([p[0].kl(o, n) for p, o, n in pairs])


def sum_all(terms: list[torch.Tensor]) -> torch.Tensor:
    return torch.stack(terms, dim=-1).sum(-1)
