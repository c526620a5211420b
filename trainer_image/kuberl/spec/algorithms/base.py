"""Hyperparameters every algorithm shares, and the policy network's configuration."""

from __future__ import annotations

from typing import Annotated, Any, ClassVar, Literal

from pydantic import Field, model_validator

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
    conv_filters: (
        list[tuple[Annotated[int, Field(ge=1)], Annotated[int, Field(ge=1)], Annotated[int, Field(ge=1)]]]
        | None
    ) = Field(
        None,
        description=(
            "CNN for image observations as [[out_channels, kernel, stride], …]. Default for image spaces: "
            "the Nature CNN (≥ 36 px a side) or two small layers."
        ),
    )
    conv_activation: Literal["relu", "elu", "silu", "tanh"] = Field("relu", description="CNN activation.")
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
    """Hyperparameters every algorithm has.

    A subclass also declares `algorithm: Literal["NAME"]` (the union's discriminator) and
    `implementation` (the `module:Class` of its Algorithm, imported only by the trainer).
    """

    implementation: ClassVar[str]

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
