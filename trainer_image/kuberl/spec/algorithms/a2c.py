"""A2C's hyperparameters (the algorithm itself is kuberl.algorithms.a2c)."""

from __future__ import annotations

from typing import ClassVar, Literal

from pydantic import AliasChoices, Field, model_validator

from kuberl.spec.algorithms.base import AlgorithmConfigBase


class A2CConfig(AlgorithmConfigBase):
    """Synchronous advantage actor-critic (Mnih et al. 2016, https://arxiv.org/abs/1602.01783)."""

    implementation: ClassVar[str] = "kuberl.algorithms.a2c:A2C"
    supports_multi_learner: ClassVar[bool] = True
    algorithm: Literal["A2C"] = Field(
        "A2C", exclude=True, description="Discriminator; set from spec.algorithm."
    )
    lr: float = Field(7e-4, gt=0.0, description="Learning rate (the start value when lrSchedule is set).")
    train_batch_size: int | None = Field(
        None,
        ge=1,
        description=(
            "Environment steps per iteration, split evenly across all sub-environments (rounded up to a "
            "multiple of envRunners × envsPerRunner). null: 500, or rolloutFragmentLength × envRunners × "
            "envsPerRunner when that is set (then this must stay unset)."
        ),
    )
    rollout_fragment_length: int | None = Field(
        None,
        ge=1,
        description=(
            "Steps per sub-environment per update (SB3's n_steps); the batch is then this × envRunners × "
            "envsPerRunner. null: derived from trainBatchSize."
        ),
    )
    minibatch_size: int | None = Field(
        None,
        ge=1,
        validation_alias=AliasChoices("minibatchSize", "minibatch_size", "sgd_minibatch_size"),
        description=(
            "Split each batch into shuffled minibatches of this size, one gradient step each (one pass). "
            "null: one step on the whole batch, as in the paper."
        ),
    )
    microbatch_size: int | None = Field(
        None,
        ge=1,
        description=(
            "Accumulate each step's gradient over microbatches of this size (saves memory; the gradient "
            "is the same up to advantage normalization). null: no accumulation."
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
        description="GAE λ (1.0 equals the n-step return). Only with useGae.",
    )
    vf_loss_coeff: float = Field(0.5, ge=0.0, description="Weight of the value loss ½·(V − R)².")
    entropy_coeff: float = Field(0.01, ge=0.0, description="Weight of the entropy bonus.")
    optimizer: Literal["rmsprop", "adam"] = Field(
        "rmsprop", description="RMSprop (the paper's and SB3's choice) or Adam."
    )
    optimizer_eps: float = Field(1e-5, gt=0.0, description="ε of the optimizer's denominator.")
    rmsprop_alpha: float = Field(
        0.99, gt=0.0, lt=1.0, description="RMSprop's squared-gradient decay. Only with optimizer rmsprop."
    )
    normalize_advantages: bool = Field(False, description="Normalize advantages per minibatch.")

    def batch_size_hint(self) -> int | None:
        """Steps per iteration when it does not depend on the resources."""
        if self.rollout_fragment_length is not None:
            return None
        return self.train_batch_size or 500

    @model_validator(mode="after")
    def _consistent(self) -> A2CConfig:
        if self.rollout_fragment_length is not None and self.train_batch_size is not None:
            raise ValueError(
                "set trainBatchSize or rolloutFragmentLength, not both: the batch is rolloutFragmentLength "
                "× envRunners × envsPerRunner when the fragment length is given"
            )
        if not self.use_gae and self.lambda_ != 1.0:
            raise ValueError("lambda only applies with useGae: true (n-step returns have no λ)")
        if self.optimizer != "rmsprop" and self.rmsprop_alpha != 0.99:
            raise ValueError("rmspropAlpha only applies with optimizer: rmsprop")
        batch = self.batch_size_hint()
        if self.minibatch_size is not None and batch is not None and self.minibatch_size > batch:
            raise ValueError(
                f"minibatch_size ({self.minibatch_size}) must not exceed train_batch_size ({batch})"
            )
        if self.microbatch_size is not None:
            step = self.minibatch_size or batch
            if step is not None and self.microbatch_size > step:
                raise ValueError(
                    f"microbatch_size ({self.microbatch_size}) must not exceed the samples per gradient step "
                    f"({step}: minibatchSize, else trainBatchSize)"
                )
        return self
