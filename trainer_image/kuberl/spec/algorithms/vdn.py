"""VDN's hyperparameters (the algorithm itself is kuberl.algorithms.vdn)."""

from __future__ import annotations

from typing import ClassVar, Literal

from pydantic import Field

from kuberl.spec.algorithms.value_factorization import ValueFactorizationConfigBase


class VDNConfig(ValueFactorizationConfigBase):
    """Value-Decomposition Networks (Sunehag et al. 2017, https://arxiv.org/abs/1706.05296): the team's
    Q-value is the sum of the agents' Q-values."""

    implementation: ClassVar[str] = "kuberl.algorithms.vdn:VDN"
    algorithm: Literal["VDN"] = Field(
        "VDN", exclude=True, description="Discriminator; set from spec.algorithm."
    )
