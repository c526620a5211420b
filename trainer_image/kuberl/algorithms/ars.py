"""Augmented Random Search, V2-t (Mania et al. 2018, https://arxiv.org/abs/1803.07055), Algorithm 2.

config  → `ARSConfig` (kuberl.spec.algorithms.ars; RLlib's names: noise_stdev, num_rollouts,
          rollouts_used, sgd_stepsize)
network → `EvolutionNet` (kuberl.algorithms.families.evolution): linear by default (M·x), θ starts at 0
V2      → states normalised by the running mean and std of every state visited (MeanStdFilter,
          merged from all runners each iteration, broadcast with θ)
step    → draw N direction seeds δ_k; play θ ± νδ_k on the runners → keep the top b directions by
          max(r⁺_k, r⁻_k) ('-t') → σ_R = std of those 2b returns →
          θ ← θ + α / (b·σ_R) · Σ_{top b} (r⁺_k − r⁻_k) δ_k → broadcast θ
"""

from __future__ import annotations

import numpy as np
import torch

from kuberl.algorithms.families.evolution import EvolutionAlgorithm, noise
from kuberl.spec.algorithms.ars import ARSConfig


class ARS(EvolutionAlgorithm[ARSConfig]):
    name = "ARS"

    def setup_optimizer(self) -> None:
        # The paper starts from M = 0: every direction is then judged from the same neutral policy.
        self.theta.zero_()

    def update(self, seeds: np.ndarray, plus: np.ndarray, minus: np.ndarray) -> dict[str, float]:
        b = self.config.rollouts_used or len(seeds)
        top = np.argsort(-np.maximum(plus, minus), kind="stable")[:b]
        used = np.concatenate([plus[top], minus[top]])
        # σ_R: all-equal returns (e.g. every direction balanced CartPole to the limit) mean no signal.
        sigma_r = float(used.std())
        step = np.zeros(self.theta.numel(), dtype=np.float64)
        if sigma_r > 1e-8:
            for k in top:
                step += float(plus[k] - minus[k]) * noise(int(seeds[k]), step.size)
            step *= self.config.sgd_stepsize / (b * sigma_r)
        self.theta += torch.from_numpy(step)
        return {"reward_std": sigma_r, "step_norm": float(np.linalg.norm(step)), "rollouts_used": float(b)}
