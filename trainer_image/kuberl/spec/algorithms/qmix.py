"""QMIX's hyperparameters (the algorithm itself is kuberl.algorithms.qmix)."""

from __future__ import annotations

from typing import ClassVar, Literal

from pydantic import Field

from kuberl.spec.algorithms.value_factorization import ValueFactorizationConfigBase


class QMIXConfig(ValueFactorizationConfigBase):
    """QMIX (Rashid et al. 2018, https://arxiv.org/abs/1803.11485): per-agent Q-values combined by a
    monotonic mixing network whose weights a hypernetwork computes from the global state."""

    implementation: ClassVar[str] = "kuberl.algorithms.qmix:QMIX"
    algorithm: Literal["QMIX"] = Field(
        "QMIX", exclude=True, description="Discriminator; set from spec.algorithm."
    )

    mixing_embed_dim: int = Field(
        32, ge=1, le=1024, description="Width of the mixing network's hidden layer."
    )
    hypernet_hidden: int = Field(
        64, ge=1, le=1024, description="Hidden width of the hypernetworks that output the mixer's weights."
    )
