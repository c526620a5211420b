"""QMIX (Rashid et al. 2018, https://arxiv.org/abs/1803.11485): monotonic value factorization. The
agents' Q-values are mixed into the team's by a network whose non-negative weights come from
hypernetworks of the global state (kuberl.algorithms.families.value_factorization)."""

from __future__ import annotations

from torch import nn

from kuberl.algorithms.families.value_factorization import MonotonicMixer, ValueFactorizationAlgorithm
from kuberl.spec.algorithms.qmix import QMIXConfig


class QMIX(ValueFactorizationAlgorithm[QMIXConfig]):
    name = "QMIX"

    def build_mixer(self, n_agents: int, state_dim: int) -> nn.Module:
        cfg = self.config
        return MonotonicMixer(n_agents, state_dim, cfg.mixing_embed_dim, cfg.hypernet_hidden)
