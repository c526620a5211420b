"""BC's hyperparameters (the algorithm itself is kuberl.algorithms.bc)."""

from __future__ import annotations

from typing import ClassVar, Literal

from pydantic import Field

from kuberl.spec.algorithms.offline import OfflineConfigBase
from kuberl.spec.capabilities import ANY_SPACE, Capabilities


class BCConfig(OfflineConfigBase):
    """Behaviour cloning: maximum likelihood of the recorded actions (MARWIL with β = 0); trains from
    spec.input."""

    implementation: ClassVar[str] = "kuberl.algorithms.bc:BC"
    capabilities: ClassVar[Capabilities] = Capabilities(ANY_SPACE, offline_input=True, offline_output=False)
    algorithm: Literal["BC"] = Field(
        "BC", exclude=True, description="Discriminator; set from spec.algorithm."
    )
