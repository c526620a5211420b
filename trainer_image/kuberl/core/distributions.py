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
