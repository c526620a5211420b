"""VDN (Sunehag et al. 2017, https://arxiv.org/abs/1706.05296): the team's Q-value is the sum of the
agents' Q-values (kuberl.algorithms.families.value_factorization)."""

from __future__ import annotations

from torch import nn

from kuberl.algorithms.families.value_factorization import SumMixer, ValueFactorizationAlgorithm
from kuberl.spec.algorithms.vdn import VDNConfig


class VDN(ValueFactorizationAlgorithm[VDNConfig]):
    name = "VDN"

    def build_mixer(self, n_agents: int, state_dim: int) -> nn.Module:
        return SumMixer()
