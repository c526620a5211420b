"""ARS's hyperparameters (the algorithm itself is kuberl.algorithms.ars)."""

from __future__ import annotations

from typing import ClassVar, Literal

from pydantic import Field, model_validator

from kuberl.spec.algorithms.base import AlgorithmConfigBase, ModelConfig
from kuberl.spec.algorithms.es import DERIVATIVE_FREE_REFUSED, check_derivative_free
from kuberl.spec.capabilities import EVOLUTION_SPACES, Capabilities


class ARSConfig(AlgorithmConfigBase):
    """Augmented Random Search, V2-t (Mania et al. 2018, https://arxiv.org/abs/1803.07055)."""

    implementation: ClassVar[str] = "kuberl.algorithms.ars:ARS"
    capabilities: ClassVar[Capabilities] = Capabilities(EVOLUTION_SPACES, offline_output=False)
    refused_fields: ClassVar[tuple[str, ...]] = DERIVATIVE_FREE_REFUSED
    # Only returns come back from the runners (kuberl.spec.combinations refuses spec.output).
    single_learner_reason: ClassVar[str] = (
        "has no gradient learner to split over data-parallel ranks (θ moves in the driver; scale it with "
        "more resources.envRunners instead)"
    )
    algorithm: Literal["ARS"] = Field(
        "ARS", exclude=True, description="Discriminator; set from spec.algorithm."
    )
    noise_stdev: float = Field(
        0.03, gt=0.0, description="ν: standard deviation of the exploration noise on the policy's parameters."
    )
    num_rollouts: int = Field(
        16, ge=1, description="N: directions per iteration, each evaluated at θ + νδ and θ − νδ."
    )
    rollouts_used: int | None = Field(
        None,
        ge=1,
        description=(
            "b: the top directions (by max(r⁺, r⁻)) used in the update (the '-t' of V2-t). "
            "null: all numRollouts. Must not exceed numRollouts."
        ),
    )
    episodes_per_rollout: int = Field(
        1, ge=1, description="Episodes per perturbed policy; its return is their mean."
    )
    sgd_stepsize: float = Field(
        0.02, gt=0.0, description="α: step size; each step is divided by the std of the 2b returns used."
    )
    observation_filter: Literal["NoFilter", "MeanStdFilter"] = Field(
        "MeanStdFilter",
        description=(
            "MeanStdFilter (V2, the default) normalises states with the running mean and std of every "
            "state visited; NoFilter is ARS V1."
        ),
    )
    model: ModelConfig = Field(
        default_factory=lambda: ModelConfig(fcnet_hiddens=[]),
        description="The policy: linear by default (fcnetHiddens: []), as in the paper; hidden layers make it an MLP.",
    )

    @model_validator(mode="after")
    def _consistent(self) -> ARSConfig:
        check_derivative_free(self, "ARS", "sgdStepsize")
        if self.rollouts_used is not None and self.rollouts_used > self.num_rollouts:
            raise ValueError(
                f"rollouts_used ({self.rollouts_used}) cannot exceed num_rollouts ({self.num_rollouts}): the top b "
                "directions are chosen among the N evaluated"
            )
        return self
