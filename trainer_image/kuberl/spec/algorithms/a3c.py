"""A3C's hyperparameters (the algorithm itself is kuberl.algorithms.a3c)."""

from __future__ import annotations

from typing import ClassVar, Literal

from pydantic import AliasChoices, Field

from kuberl.spec.algorithms.actor_critic import AdvantageActorCriticConfig
from kuberl.spec.capabilities import ALL_SPACES, Capabilities


class A3CConfig(AdvantageActorCriticConfig):
    """Asynchronous advantage actor-critic (Mnih et al. 2016, https://arxiv.org/abs/1602.01783)."""

    # The advantage estimator, loss weights and optimizer are AdvantageActorCriticConfig's (shared with A2C).

    implementation: ClassVar[str] = "kuberl.algorithms.a3c:A3C"
    capabilities: ClassVar[Capabilities] = Capabilities(ALL_SPACES)
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
    optimizer: Literal["rmsprop", "adam"] = Field(
        "rmsprop",
        description="The learner's optimizer: RMSprop (the paper's, with statistics shared by all runners) or Adam.",
    )
    normalize_advantages: bool = Field(False, description="Normalize advantages over each fragment.")
