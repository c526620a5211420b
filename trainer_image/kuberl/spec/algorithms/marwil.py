"""MARWIL's hyperparameters (the algorithm itself is kuberl.algorithms.marwil)."""

from __future__ import annotations

from typing import ClassVar, Literal

from pydantic import Field

from kuberl.spec.algorithms.base import OffFloat
from kuberl.spec.algorithms.offline import OfflineConfigBase
from kuberl.spec.capabilities import ANY_SPACE, Capabilities


class MARWILConfig(OfflineConfigBase):
    """Monotonic Advantage Re-Weighted Imitation Learning (Wang et al. 2018,
    https://papers.nips.cc/paper/7866): behaviour cloning weighted by exp(β·advantage); trains from
    spec.input."""

    implementation: ClassVar[str] = "kuberl.algorithms.marwil:MARWIL"
    capabilities: ClassVar[Capabilities] = Capabilities(ANY_SPACE, offline_input=True, offline_output=False)
    algorithm: Literal["MARWIL"] = Field(
        "MARWIL", exclude=True, description="Discriminator; set from spec.algorithm."
    )
    beta: float = Field(
        1.0,
        ge=0.0,
        description="Advantage temperature β: the log-likelihood of each action is weighted by exp(β·A/c); 0 is BC.",
    )
    vf_coeff: float = Field(1.0, ge=0.0, description="Weight of the value (returns-to-go regression) loss.")
    moving_average_sqd_adv_norm_start: float = Field(
        100.0, gt=0.0, description="Start value of c², the moving average of the squared advantage."
    )
    moving_average_sqd_adv_norm_update_rate: float = Field(
        1e-8,
        ge=0.0,
        le=1.0,
        description="Update rate of c² towards each minibatch's mean squared advantage (RLlib's default: 1e-8).",
    )
    max_weight: OffFloat = Field(
        20.0,
        gt=0.0,
        description="Clip exp(β·A/c) to this (off: no clipping), as advantage-weighted regression does for stability.",
    )
