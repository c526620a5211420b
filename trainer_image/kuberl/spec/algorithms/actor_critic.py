"""Fields that the actor-critics A2C, A3C and PG share (their algorithms share kuberl.algorithms.families.actor_critic's
loss and learner): the optimizer's (annotated types PG declares too), and for A2C and A3C the
advantage estimator and loss weights (their base class). Each algorithm's own module adds the rest and
overrides a field where its default or meaning differs."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import AliasChoices, Field, model_validator

from kuberl.spec.algorithms.base import AlgorithmConfigBase

# The optimizer fields A2C, A3C and PG share, as annotated types each config declares itself (one
# inheritance level fewer than a shared base class: #14 §3). PG's and A3C's `optimizer` differ in
# default or description, so each declares that field with its own Field.
OptimizerEps = Annotated[float, Field(gt=0.0, description="ε of the optimizer's denominator.")]
RmspropAlpha = Annotated[
    float,
    Field(gt=0.0, lt=1.0, description="RMSprop's squared-gradient decay. Only with optimizer rmsprop."),
]
RMSPROP_ALPHA = 0.99


def check_rmsprop_alpha(optimizer: str, rmsprop_alpha: float) -> None:
    if optimizer != "rmsprop" and rmsprop_alpha != RMSPROP_ALPHA:
        raise ValueError("rmspropAlpha only applies with optimizer: rmsprop")


class AdvantageActorCriticConfig(AlgorithmConfigBase):
    """A2C's and A3C's optimizer, advantages (GAE or n-step returns) and loss weights."""

    optimizer: Literal["rmsprop", "adam"] = Field(
        "rmsprop", description="RMSprop (the paper's and SB3's choice) or Adam."
    )
    optimizer_eps: OptimizerEps = 1e-5
    rmsprop_alpha: RmspropAlpha = RMSPROP_ALPHA
    use_gae: bool = Field(
        True, description="GAE(γ, λ) advantages; false: n-step returns bootstrapped at the fragment end."
    )
    lambda_: float = Field(
        1.0,
        ge=0.0,
        le=1.0,
        alias="lambda",
        validation_alias=AliasChoices("lambda", "lambda_"),
        description="GAE λ (1.0 equals the n-step return). Only with useGae.",
    )
    vf_loss_coeff: float = Field(0.5, ge=0.0, description="Weight of the value loss ½·(V − R)².")
    entropy_coeff: float = Field(0.01, ge=0.0, description="Weight of the entropy bonus.")

    @model_validator(mode="after")
    def _optimizer_and_gae(self) -> AdvantageActorCriticConfig:
        check_rmsprop_alpha(self.optimizer, self.rmsprop_alpha)
        if not self.use_gae and self.lambda_ != 1.0:
            raise ValueError("lambda only applies with useGae: true (n-step returns have no λ)")
        return self


def check_batch_or_fragment(train_batch_size: int | None, rollout_fragment_length: int | None) -> None:
    """A2C and PG size their batch by one of the two, never both."""
    if rollout_fragment_length is not None and train_batch_size is not None:
        raise ValueError(
            "set trainBatchSize or rolloutFragmentLength, not both: the batch is rolloutFragmentLength "
            "× envRunners × envsPerRunner when the fragment length is given"
        )
