"""Evolution Strategies (Salimans et al. 2017, https://arxiv.org/abs/1703.03864).

config  → `ESConfig` (kuberl.spec.algorithms.es; RLlib's names: noise_stdev, stepsize, l2_coeff, eval_prob)
network → `EvolutionNet` (kuberl.algorithms.families.evolution): an MLP policy acting deterministically, no critic
step    → draw n direction seeds; every runner regenerates ε_i from its seed and plays θ + σε_i and
          θ − σε_i (antithetic pairs) → fitness shaping: all 2n returns → centered ranks in [−½, ½]
          → g = 1/(2nσ) Σ_i (rank⁺_i − rank⁻_i) ε_i → Adam on −g + l2·θ → broadcast θ
Only seeds and returns cross the wire (kuberl.algorithms.families.evolution).
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from kuberl.algorithms.families.evolution import EvolutionAlgorithm, antithetic_gradient, centered_ranks
from kuberl.core.learner import load_optimizer_state
from kuberl.core.optim import Adam, OptimizerStep
from kuberl.spec.algorithms.es import ESConfig


class ES(EvolutionAlgorithm[ESConfig]):
    name = "ES"

    def setup_optimizer(self) -> None:
        # Adam over the flat parameter vector: the driver is the only place θ changes. kuberl.core.optim's
        # Adam and step: torch's, without importing torch._dynamo (over a second of start-up).
        self.theta.requires_grad_(True)
        self.optimizer = Adam([self.theta], lr=self.config.stepsize)
        self.optimizer_step = OptimizerStep(self.optimizer)

    def extra_candidates(self) -> list[tuple[int, float]]:
        # Sign 0: the unperturbed θ (RLlib's eval_prob), drawn from the driver's checkpointed generator.
        return [(0, 0.0)] if self.np_rng.random() < self.config.eval_prob else []

    def update(self, seeds: np.ndarray, plus: np.ndarray, minus: np.ndarray) -> dict[str, float]:
        ranks = centered_ranks(np.stack([plus, minus], axis=1))
        grad = antithetic_gradient(
            seeds, ranks[:, 0] - ranks[:, 1], self.theta.numel(), self.config.noise_stdev
        )
        with torch.no_grad():
            # Adam minimises: ascend the fitness, and decay the weights (the paper's L2 regularisation).
            self.theta.grad = -torch.from_numpy(grad) + self.config.l2_coeff * self.theta.detach()
        self.optimizer_step.step()
        self.optimizer_step.zero_grad()
        return {"grad_norm": float(np.linalg.norm(grad)), "stepsize": self.config.stepsize}

    def algorithm_state(self) -> dict[str, Any]:
        return {"theta": self.theta.detach().clone(), "optimizer": self.optimizer.state_dict()}

    def set_algorithm_state(self, state: dict[str, Any]) -> None:  # type: ignore[override]
        with torch.no_grad():
            super().set_algorithm_state(state)
        load_optimizer_state(self.optimizer, state["optimizer"])  # an edited stepsize takes effect
