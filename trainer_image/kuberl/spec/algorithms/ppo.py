"""PPO's hyperparameters (the algorithm itself is kuberl.algorithms.ppo)."""

from __future__ import annotations

from typing import ClassVar, Literal

from pydantic import AliasChoices, Field, model_validator

from kuberl.spec.algorithms.base import AlgorithmConfigBase
from kuberl.spec.capabilities import ALL_SPACES, Capabilities


class PPOConfig(AlgorithmConfigBase):
    """Proximal Policy Optimization (Schulman et al. 2017, https://arxiv.org/abs/1707.06347)."""

    implementation: ClassVar[str] = "kuberl.algorithms.ppo:PPO"
    capabilities: ClassVar[Capabilities] = Capabilities(
        ALL_SPACES,
        external=True,
        multi_agent=True,
        action_masks="model",
        recurrent=True,
        multi_learner=True,
        reward_normalization=True,
    )
    algorithm: Literal["PPO"] = Field(
        "PPO", exclude=True, description="Discriminator; set from spec.algorithm."
    )
    train_batch_size: int = Field(
        4000,
        ge=1,
        description=(
            "Environment steps per iteration, split evenly across all sub-environments (rounded up to a "
            "multiple of envRunners × envsPerRunner)."
        ),
    )
    minibatch_size: int = Field(
        256,
        ge=1,
        validation_alias=AliasChoices(
            "minibatchSize", "minibatch_size", "sgd_minibatch_size", "sgdMinibatchSize"
        ),
        description="Samples per gradient step.",
    )
    num_epochs: int = Field(
        10,
        ge=1,
        validation_alias=AliasChoices("numEpochs", "num_epochs", "num_sgd_iter", "numSgdIter"),
        description="Passes over the batch per iteration.",
    )
    lambda_: float = Field(
        0.95,
        ge=0.0,
        le=1.0,
        alias="lambda",
        validation_alias=AliasChoices("lambda", "lambda_"),
        description="GAE λ.",
    )
    clip_param: float = Field(0.2, gt=0.0, description="PPO clip range ε of the probability ratio.")
    vf_clip_param: float | None = Field(
        None,
        gt=0.0,
        description="Clip value-function updates to ±this around the old value (off: no clipping).",
    )
    vf_loss_coeff: float = Field(0.5, ge=0.0, description="Weight of the value loss.")
    entropy_coeff: float = Field(0.0, ge=0.0, description="Weight of the entropy bonus.")
    kl_coeff: float = Field(
        0.0, ge=0.0, description="Initial weight of a KL penalty (adapted towards klTarget). 0 disables it."
    )
    kl_target: float = Field(
        0.01, gt=0.0, description="Target KL per iteration for the penalty and early stop."
    )
    kl_early_stop: bool = Field(
        False, description="Stop the epochs of an iteration once the approximate KL exceeds 1.5 × klTarget."
    )
    normalize_advantages: bool = Field(True, description="Normalize advantages per minibatch.")

    @model_validator(mode="after")
    def _consistent(self) -> PPOConfig:
        if self.minibatch_size > self.train_batch_size:
            raise ValueError(
                f"minibatch_size ({self.minibatch_size}) must not exceed train_batch_size "
                f"({self.train_batch_size}): each epoch needs at least one full minibatch"
            )
        return self
