"""BC's hyperparameters (the algorithm itself is kuberl.algorithms.bc)."""

from __future__ import annotations

from typing import ClassVar, Literal

from pydantic import Field

from kuberl.spec.offline import OfflineConfigBase


class BCConfig(OfflineConfigBase):
    """Behaviour cloning: maximum likelihood of the recorded actions (MARWIL with β = 0); trains from
    spec.input."""

    implementation: ClassVar[str] = "kuberl.algorithms.bc:BC"
    algorithm: Literal["BC"] = Field(
        "BC", exclude=True, description="Discriminator; set from spec.algorithm."
    )
    lr: float = Field(
        1e-3, gt=0.0, description="Adam learning rate (the start value when lrSchedule is set)."
    )
    grad_clip: float | None = Field(
        None, gt=0.0, description="Clip the global gradient norm to this (null: off, as RLlib)."
    )
