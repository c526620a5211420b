"""APPO's hyperparameters (the algorithm itself is kuberl.algorithms.appo): IMPALA's asynchronous
sampling and V-trace (`VTraceConfig`) plus PPO's clipped surrogate against a target network."""

from __future__ import annotations

from typing import ClassVar, Literal

from pydantic import AliasChoices, Field

from kuberl.spec.algorithms.impala import VTraceConfig
from kuberl.spec.capabilities import ALL_SPACES, Capabilities


class APPOConfig(VTraceConfig):
    """Asynchronous PPO, as RLlib's APPO: the clipped surrogate on V-trace advantages, with the ratio
    taken against a periodically updated target network."""

    implementation: ClassVar[str] = "kuberl.algorithms.appo:APPO"
    capabilities: ClassVar[Capabilities] = Capabilities(ALL_SPACES, recurrent=True)
    algorithm: Literal["APPO"] = Field(
        "APPO", exclude=True, description="Discriminator; set from spec.algorithm."
    )
    clip_param: float = Field(0.4, gt=0.0, description="Clip range ε of the probability ratio π / π_target.")
    target_network_update_freq: int = Field(
        1,
        ge=1,
        validation_alias=AliasChoices(
            "targetNetworkUpdateFreq",
            "target_network_update_freq",
            "target_update_frequency",
            "targetUpdateFrequency",
        ),
        description=(
            "Train batches between copies of the learner's policy into the target network (the "
            "'old' policy of the clipped ratio and of V-trace)."
        ),
    )
    use_kl_loss: bool = Field(
        False,
        description="Add kl_coeff × KL(π_target ‖ π) to the loss, with kl_coeff adapted towards klTarget.",
    )
    kl_coeff: float = Field(1.0, ge=0.0, description="Initial weight of the KL term (with useKlLoss).")
    kl_target: float = Field(
        0.01, gt=0.0, description="Target KL for the adaptive KL weight (with useKlLoss)."
    )
