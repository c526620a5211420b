"""BC's hyperparameters (the algorithm itself is kuberl.algorithms.bc)."""

from __future__ import annotations

from typing import ClassVar, Literal

from pydantic import Field

from kuberl.spec.algorithms.imitation import ImitationConfigBase


class BCConfig(ImitationConfigBase):
    """Behaviour cloning: maximum likelihood of the recorded actions (MARWIL with β = 0); trains from
    spec.input."""

    implementation: ClassVar[str] = "kuberl.algorithms.bc:BC"
    algorithm: Literal["BC"] = Field(
        "BC", exclude=True, description="Discriminator; set from spec.algorithm."
    )
