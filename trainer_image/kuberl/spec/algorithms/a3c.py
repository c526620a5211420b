"""A3C's hyperparameters (the algorithm itself is kuberl.algorithms.a3c)."""

from __future__ import annotations

from typing import ClassVar, Literal

from pydantic import AliasChoices, Field, model_validator

from kuberl.spec.algorithms.base import AlgorithmConfigBase


class A3CConfig(AlgorithmConfigBase):
    """Asynchronous advantage actor-critic (Mnih et al. 2016, https://arxiv.org/abs/1602.01783)."""

    implementation: ClassVar[str] = "kuberl.algorithms.a3c:A3C"
    algorithm: Literal["A3C"] = Field(
        "A3C", exclude=True, description="Discriminator; set from spec.algorithm."
    )
    lr: float = Field(7e-4, gt=0.0, description="Learning rate (the start value when lrSchedule is set).")
    rollout_fragment_length: int = Field(
        10,
        ge=1,
        description=(
            "Steps per sub-environment behind each gradient (the paper's t_max): a runner samples "
            "this × envsPerRunner steps, computes one gradient and sends it to the learner."
        ),
    )
    min_sample_timesteps_per_iteration: int = Field(
        2000,
        ge=1,
        validation_alias=AliasChoices(
            "minSampleTimestepsPerIteration", "min_sample_timesteps_per_iteration", "train_batch_size"
        ),
        description=(
            "An iteration (one result row) ends once gradients covering at least this many env steps "
            "were applied."
        ),
    )
    max_policy_lag: int | None = Field(
        None,
        ge=0,
        description=(
            "Drop a gradient computed with weights more than this many updates old (its env steps still "
            "count as sampled). null: apply every gradient, as the paper does."
        ),
    )
    use_gae: bool = Field(
        True, description="GAE(γ, λ) advantages; false: n-step returns bootstrapped at the fragment end."
    )
    lambda_: float = Field(
        1.0,
        ge=0.0,
        le=1.0,
        alias="lambda",
        validation_alias=AliasChoices("lambda", "lambda_"),
        description="GAE λ (1.0 equals the paper's n-step return). Only with useGae.",
    )
    vf_loss_coeff: float = Field(0.5, ge=0.0, description="Weight of the value loss ½·(V − R)².")
    entropy_coeff: float = Field(0.01, ge=0.0, description="Weight of the entropy bonus.")
    optimizer: Literal["rmsprop", "adam"] = Field(
        "rmsprop",
        description="The learner's optimizer: RMSprop (the paper's, with statistics shared by all runners) or Adam.",
    )
    optimizer_eps: float = Field(1e-5, gt=0.0, description="ε of the optimizer's denominator.")
    rmsprop_alpha: float = Field(
        0.99, gt=0.0, lt=1.0, description="RMSprop's squared-gradient decay. Only with optimizer rmsprop."
    )
    normalize_advantages: bool = Field(False, description="Normalize advantages over each fragment.")

    @model_validator(mode="after")
    def _consistent(self) -> A3CConfig:
        if not self.use_gae and self.lambda_ != 1.0:
            raise ValueError("lambda only applies with useGae: true (n-step returns have no λ)")
        if self.optimizer != "rmsprop" and self.rmsprop_alpha != 0.99:
            raise ValueError("rmspropAlpha only applies with optimizer: rmsprop")
        return self
