"""Per-algorithm hyperparameter models, the members of the `spec.config` discriminated union.

Each model lives here rather than in the algorithm's file so that the operator (which never imports
torch) can validate `config` and the CRD can document it. RLlib's names are accepted as given.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal, Union

from pydantic import AliasChoices, Field, model_validator

from kuberl.spec.base import WireModel


class ModelConfig(WireModel):
    """The policy network. Built-in: an MLP; or a custom torch module by import path."""

    fcnet_hiddens: list[Annotated[int, Field(ge=1)]] = Field(
        default_factory=lambda: [64, 64], description="Hidden layer sizes of the MLP."
    )
    fcnet_activation: Literal["tanh", "relu", "elu", "silu"] = Field("tanh", description="Hidden activation.")
    vf_share_layers: bool = Field(
        False, description="Share the hidden layers between policy and value heads (else two separate MLPs)."
    )
    free_log_std: bool = Field(
        True, description="Continuous actions: a state-independent learned log-std (else the net outputs it)."
    )
    custom_model: str | None = Field(
        None,
        pattern=r"^[A-Za-z_][\w.]*:[A-Za-z_]\w*$",
        description="`module:Class` of a torch module built as Class(obs_space, action_space, customModelConfig).",
    )
    custom_model_config: dict[str, Any] = Field(
        default_factory=dict, description="Keyword arguments passed to the custom model."
    )


ScheduleType = list[tuple[Annotated[int, Field(ge=0)], float]]


def _check_schedule(name: str, schedule: ScheduleType | None) -> None:
    if schedule is None:
        return
    if len(schedule) < 1:
        raise ValueError(f"{name} needs at least one [timestep, value] point")
    steps = [t for t, _ in schedule]
    if steps != sorted(steps):
        raise ValueError(f"{name} timesteps must be increasing, got {steps}")


class AlgorithmConfigBase(WireModel):
    """Hyperparameters every algorithm has."""

    gamma: float = Field(0.99, ge=0.0, le=1.0, description="Discount factor.")
    lr: float = Field(3e-4, gt=0.0, description="Learning rate (the start value when lrSchedule is set).")
    lr_schedule: ScheduleType | None = Field(
        None,
        description="Piecewise-linear learning rate as [[timestep, lr], …]; held constant after the last point.",
    )
    grad_clip: float | None = Field(
        0.5, gt=0.0, description="Clip the global gradient norm to this (null: off)."
    )
    observation_filter: Literal["NoFilter", "MeanStdFilter"] = Field(
        "NoFilter",
        description="MeanStdFilter normalizes observations with running statistics shared by all runners.",
    )
    model: ModelConfig = Field(default_factory=ModelConfig, description="Policy and value networks.")

    @model_validator(mode="after")
    def _schedules(self) -> AlgorithmConfigBase:
        _check_schedule("lr_schedule", self.lr_schedule)
        return self


class PPOConfig(AlgorithmConfigBase):
    """Proximal Policy Optimization (Schulman et al. 2017, https://arxiv.org/abs/1707.06347)."""

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
        None, gt=0.0, description="Clip value-function updates to ±this around the old value (null: off)."
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


# The union every algorithm joins (add the new model to the Union). The discriminator `algorithm` is
# copied into `config` from spec.algorithm before validation, so users never write it twice.
AlgorithmConfig = Annotated[Union[PPOConfig], Field(discriminator="algorithm")]  # noqa: UP007

CONFIG_MODELS: dict[str, type[AlgorithmConfigBase]] = {
    "PPO": PPOConfig,
}
ALGORITHMS: tuple[str, ...] = tuple(CONFIG_MODELS)
