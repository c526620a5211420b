"""PG's hyperparameters (the algorithm itself is kuberl.algorithms.pg)."""

from __future__ import annotations

from typing import ClassVar, Literal

from pydantic import Field, model_validator

from kuberl.spec.algorithms.actor_critic import (
    RMSPROP_ALPHA,
    OptimizerEps,
    RmspropAlpha,
    check_batch_or_fragment,
    check_rmsprop_alpha,
)
from kuberl.spec.algorithms.base import AlgorithmConfigBase
from kuberl.spec.capabilities import ALL_SPACES, Capabilities


class PGConfig(AlgorithmConfigBase):
    """REINFORCE with a learned value baseline (Williams 1992, https://doi.org/10.1007/BF00992696)."""

    # The optimizer fields are declared as A2C's and A3C's are (kuberl.spec.algorithms.actor_critic); Adam
    # by default here.

    implementation: ClassVar[str] = "kuberl.algorithms.pg:PG"
    capabilities: ClassVar[Capabilities] = Capabilities(
        ALL_SPACES,
        external=True,
        multi_agent=True,
        action_masks="model",
        multi_learner=True,
        reward_normalization=True,
    )
    optimizer: Literal["adam", "rmsprop"] = Field("adam", description="Adam or RMSprop.")
    optimizer_eps: OptimizerEps = 1e-5
    rmsprop_alpha: RmspropAlpha = RMSPROP_ALPHA
    algorithm: Literal["PG"] = Field(
        "PG", exclude=True, description="Discriminator; set from spec.algorithm."
    )
    lr: float = Field(4e-4, gt=0.0, description="Learning rate (the start value when lrSchedule is set).")
    train_batch_size: int | None = Field(
        None,
        ge=1,
        description=(
            "Environment steps per gradient update, split evenly across all sub-environments (rounded up "
            "to a multiple of envRunners × envsPerRunner). null: 2000, or rolloutFragmentLength × "
            "envRunners × envsPerRunner when that is set (then this must stay unset)."
        ),
    )
    rollout_fragment_length: int | None = Field(
        None,
        ge=1,
        description=(
            "Steps per sub-environment per update. Returns are Monte-Carlo inside a fragment and "
            "bootstrapped with V only where it ends mid-episode, so longer is closer to pure REINFORCE. "
            "null: derived from trainBatchSize."
        ),
    )
    vf_loss_coeff: float = Field(
        0.5, ge=0.0, description="Weight of the baseline's regression loss ½·(V(s) − G)²."
    )
    entropy_coeff: float = Field(0.0, ge=0.0, description="Weight of the entropy bonus.")
    normalize_advantages: bool = Field(
        True, description="Normalize the advantages G − V(s) over each batch (variance reduction)."
    )

    @model_validator(mode="after")
    def _consistent(self) -> PGConfig:
        check_rmsprop_alpha(self.optimizer, self.rmsprop_alpha)
        check_batch_or_fragment(self.train_batch_size, self.rollout_fragment_length)
        return self
