"""ES's hyperparameters (the algorithm itself is kuberl.algorithms.es)."""

from __future__ import annotations

from typing import ClassVar, Literal

from pydantic import Field, model_validator

from kuberl.spec.algorithms.base import AlgorithmConfigBase, ModelConfig
from kuberl.spec.capabilities import EVOLUTION_SPACES, Capabilities

# The gradient-descent fields every other algorithm has, which ES and ARS refuse (their refused_fields).
DERIVATIVE_FREE_REFUSED = ("lr", "lr_schedule", "grad_clip", "gamma")


def check_derivative_free(config: AlgorithmConfigBase, name: str, step_field: str) -> None:
    """ES and ARS follow no loss gradient and learn no critic: the gradient-descent fields every other
    algorithm has would be silently ignored, so setting one is an error that says what to use instead."""
    for field in DERIVATIVE_FREE_REFUSED:
        if field in config.model_fields_set:
            hint = f"; set {step_field} instead" if field in ("lr", "lr_schedule") else ""
            raise ValueError(
                f"{field}: {name} maximises the undiscounted episode return by perturbing the policy's "
                f"parameters and never takes a loss gradient, so {field} has no effect{hint}"
            )
    if config.model.custom_model or config.model.conv_filters:
        raise ValueError(
            f"model: {name} builds its own MLP policy (model.fcnetHiddens, model.fcnetActivation); "
            "customModel and convFilters are not supported"
        )


class ESConfig(AlgorithmConfigBase):
    """Evolution Strategies (Salimans et al. 2017, https://arxiv.org/abs/1703.03864)."""

    implementation: ClassVar[str] = "kuberl.algorithms.es:ES"
    capabilities: ClassVar[Capabilities] = Capabilities(EVOLUTION_SPACES, offline_output=False)
    refused_fields: ClassVar[tuple[str, ...]] = DERIVATIVE_FREE_REFUSED
    # Only returns come back from the runners (kuberl.spec.combinations refuses spec.output).
    single_learner_reason: ClassVar[str] = (
        "has no gradient learner to split over data-parallel ranks (θ moves in the driver; scale it with "
        "more resources.envRunners instead)"
    )
    algorithm: Literal["ES"] = Field(
        "ES", exclude=True, description="Discriminator; set from spec.algorithm."
    )
    noise_stdev: float = Field(
        0.02, gt=0.0, description="σ: standard deviation of the Gaussian parameter perturbations θ ± σε."
    )
    num_rollouts: int = Field(
        32,
        ge=1,
        description=(
            "Perturbation directions per iteration. Each is evaluated twice (θ + σε and θ − σε, antithetic), "
            "so an iteration plays 2 × numRollouts × episodesPerRollout episodes, spread over the env runners."
        ),
    )
    episodes_per_rollout: int = Field(
        1, ge=1, description="Episodes per perturbed policy; its fitness is their mean return."
    )
    stepsize: float = Field(0.01, gt=0.0, description="Adam's step size on the estimated gradient.")
    l2_coeff: float = Field(
        0.005, ge=0.0, description="Weight decay: l2Coeff · θ is added to the (negated) gradient before Adam."
    )
    eval_prob: float = Field(
        0.0,
        ge=0.0,
        le=1.0,
        description=(
            "Probability per iteration of also playing the unperturbed θ (episodesPerRollout episodes), "
            "reported as thetaReturnMean. 0: never (spec.evaluation measures θ in the driver instead)."
        ),
    )
    observation_filter: Literal["NoFilter", "MeanStdFilter"] = Field(
        "MeanStdFilter",
        description=(
            "MeanStdFilter (the default here, as in the paper) normalises observations with running "
            "statistics of every state the perturbed policies visit."
        ),
    )
    model: ModelConfig = Field(
        default_factory=lambda: ModelConfig(fcnet_hiddens=[32, 32]),
        description="The policy MLP (no value head). fcnetHiddens: [] is a linear policy.",
    )

    @model_validator(mode="after")
    def _derivative_free(self) -> ESConfig:
        check_derivative_free(self, "ES", "stepsize")
        return self
