"""A2C's hyperparameters (the algorithm itself is kuberl.algorithms.a2c)."""

from __future__ import annotations

from typing import ClassVar, Literal

from pydantic import AliasChoices, Field, model_validator

from kuberl.spec.algorithms.actor_critic import AdvantageActorCriticConfig, check_batch_or_fragment
from kuberl.spec.capabilities import ALL_SPACES, Capabilities


class A2CConfig(AdvantageActorCriticConfig):
    """Synchronous advantage actor-critic (Mnih et al. 2016, https://arxiv.org/abs/1602.01783)."""

    # The advantage estimator, loss weights and optimizer are AdvantageActorCriticConfig's (shared with A3C).

    implementation: ClassVar[str] = "kuberl.algorithms.a2c:A2C"
    capabilities: ClassVar[Capabilities] = Capabilities(
        ALL_SPACES,
        external=True,
        multi_agent=True,
        action_masks="model",
        multi_learner=True,
        reward_normalization=True,
    )
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
    normalize_advantages: bool = Field(False, description="Normalize advantages per minibatch.")

    def batch_size_hint(self) -> int | None:
        """Steps per iteration when it does not depend on the resources."""
        if self.rollout_fragment_length is not None:
            return None
        return self.train_batch_size or 500

    @model_validator(mode="after")
    def _consistent(self) -> A2CConfig:
        check_batch_or_fragment(self.train_batch_size, self.rollout_fragment_length)
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
