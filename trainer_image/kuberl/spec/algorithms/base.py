"""Hyperparameters every algorithm shares, and the policy network's configuration."""

from __future__ import annotations

from typing import Annotated, Any, ClassVar, Literal

from pydantic import BeforeValidator, ConfigDict, Field, model_validator
from pydantic.alias_generators import to_camel
from pydantic_core import PydanticCustomError

from kuberl.spec.base import WireModel
from kuberl.spec.capabilities import Capabilities

# Upper bounds that keep a typo from asking for terabytes (`trainBatchSize: 10**12` allocated 14.6 TiB of
# buffers; `fcnetHiddens: [100000, 100000]` 40 GB of weights) far above anything that trains on one node.
MAX_LAYER_WIDTH = 8192
MAX_BATCH = 10_000_000
# Batch-shaped fields, wherever an algorithm config has them.
BATCH_FIELDS = ("train_batch_size", "minibatch_size", "rollout_fragment_length")


class ModelConfig(WireModel):
    """The policy network. Built-in: an MLP; or a custom torch module by import path."""

    fcnet_hiddens: list[Annotated[int, Field(ge=1, le=MAX_LAYER_WIDTH)]] = Field(
        default_factory=lambda: [64, 64], description="Hidden layer sizes of the MLP."
    )
    fcnet_activation: Literal["tanh", "relu", "elu", "silu"] = Field("tanh", description="Hidden activation.")
    vf_share_layers: bool = Field(
        False, description="Share the hidden layers between policy and value heads (else two separate MLPs)."
    )
    conv_filters: (
        list[
            tuple[
                Annotated[int, Field(ge=1, le=MAX_LAYER_WIDTH)],
                Annotated[int, Field(ge=1, le=256)],
                Annotated[int, Field(ge=1, le=256)],
            ]
        ]
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
    use_lstm: bool = Field(
        False,
        description=(
            "Recurrent policy: an LSTM between the encoder (MLP, or CNN + MLP) and the policy and value "
            "heads, which it feeds both. PPO, IMPALA and APPO support it; QMIX and VDN give their agent "
            "network a GRU cell of lstmCellSize instead (docs/algorithms/qmix.md)."
        ),
    )
    lstm_cell_size: int = Field(
        256, ge=1, le=MAX_LAYER_WIDTH, description="Size of the LSTM's hidden and cell state."
    )
    max_seq_len: int = Field(
        20,
        ge=1,
        description=(
            "PPO: training sequences are chunks of this many time steps (backpropagation through time is "
            "truncated there); each chunk starts from the LSTM state the env runner had at that step. "
            "IMPALA/APPO unroll whole rollout fragments instead."
        ),
    )
    lstm_use_prev_action: bool = Field(
        False,
        description="Feed the previous action (one-hot when discrete) into the LSTM with the observation.",
    )
    lstm_use_prev_reward: bool = Field(
        False, description="Feed the previous reward into the LSTM with the observation."
    )

    @model_validator(mode="after")
    def _recurrent(self) -> ModelConfig:
        if self.use_lstm and self.custom_model:
            raise ValueError(
                "use_lstm wraps the built-in encoder and cannot be combined with custom_model "
                f"({self.custom_model!r})"
            )
        return self


ScheduleType = list[tuple[Annotated[int, Field(ge=0)], float]]

#: How a job turns off a setting whose off value is None (gradClip, maxWeight, the V-trace clips).
#: `kubectl apply` drops nulls, so `gradClip: null` would reach the cluster as the default: `off`
#: survives. YAML 1.1 (PyYAML, kubectl) reads a bare `off` as false, so false is off too; the strings
#: "off" and "none" (RLlib's None, written in YAML) mean the same, in a local file and on a cluster.
OFF_SPELLINGS = ("off", "none")


def _off_is_none(value: Any) -> Any:
    if value is False:
        return None
    if value is True:  # a float field would otherwise take it as 1.0
        raise ValueError("true is not a number: give a number, or off")
    if not isinstance(value, str):
        return value
    if value.strip().lower() in OFF_SPELLINGS:
        return None
    try:
        float(value)
    except ValueError:
        raise ValueError(f"{value!r} is neither a number nor off") from None
    return value


#: A float setting that `off` (or null) turns off; the model holds None then.
OffFloat = Annotated[float | None, BeforeValidator(_off_is_none)]

# The replay algorithms' (DQN family, SAC/DDPG/TD3 family, QMIX/VDN) opt-in to checkpointing their buffer:
# declared once, so every config documents it alike.
StoreBufferInCheckpoints = Annotated[
    bool,
    Field(
        description=(
            "Also save the replay buffer in checkpoints, so a resumed run continues with the same data "
            "(large: up to capacity transitions)."
        )
    ),
]


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
    # NaN or ±inf in any hyperparameter (`lr: .inf`) trains to NaN weights (review M1): refuse them here.
    model_config = ConfigDict(allow_inf_nan=False)

    gamma: float = Field(0.99, ge=0.0, le=1.0, description="Discount factor.")
    lr: float = Field(3e-4, gt=0.0, description="Learning rate (the start value when lrSchedule is set).")
    lr_schedule: ScheduleType | None = Field(
        None,
        description="Piecewise-linear learning rate as [[timestep, lr], …]; held constant after the last point.",
    )
    grad_clip: OffFloat = Field(
        0.5, gt=0.0, description="Clip the global gradient norm to this (off: no clipping)."
    )
    observation_filter: Literal["NoFilter", "MeanStdFilter"] = Field(
        "NoFilter",
        description="MeanStdFilter normalizes observations with running statistics shared by all runners.",
    )
    normalize_rewards: bool = Field(
        False,
        description=(
            "Scale the rewards the learner sees by the running std of each sub-env's discounted return "
            "(discount gamma), then clip them to ±normalizedRewardClip: SB3's VecNormalize(norm_reward=True) "
            "and CleanRL's NormalizeReward. The statistics are shared by all runners (as MeanStdFilter's) and "
            "checkpointed; reported episode returns stay raw."
        ),
    )
    normalized_reward_clip: float = Field(
        10.0,
        gt=0.0,
        description="With normalizeRewards: clip the scaled rewards to ±this (SB3's clip_reward).",
    )
    model: ModelConfig = Field(default_factory=ModelConfig, description="Policy and value networks.")
    callbacks: str | None = Field(
        None,
        pattern=r"^[A-Za-z_][\w.]*:[A-Za-z_]\w*$",
        description=(
            "`module:Class` of a kuberl.DefaultCallbacks subclass, built inside every env runner and in the "
            "driver; its hooks and custom metrics are described in docs/callbacks.md."
        ),
    )

    # The features this algorithm supports (kuberl.spec.capabilities): every algorithm config sets its own.
    capabilities: ClassVar[Capabilities]
    # Inherited fields this algorithm refuses whenever they are set (ES and ARS take no gradient steps):
    # the CRD leaves them out of the algorithm's config keys (kuberl.spec.crd.config_keys).
    refused_fields: ClassVar[tuple[str, ...]] = ()

    @model_validator(mode="after")
    def _sizes(self) -> AlgorithmConfigBase:
        problems = [
            [to_camel(name), f"{value} is more than {MAX_BATCH:,}: far beyond what fits in memory on a node"]
            for name in BATCH_FIELDS
            if isinstance(value := getattr(self, name, None), int) and value > MAX_BATCH
        ]
        if problems:
            # kuberl.spec.combinations.COMBINATION_ERROR: each problem names its own field under `config`.
            raise PydanticCustomError(
                "spec_combination",
                "{message}",
                {"message": "; ".join(f"{f}: {r}" for f, r in problems), "problems": problems},
            )
        return self

    @model_validator(mode="after")
    def _schedules(self) -> AlgorithmConfigBase:
        _check_schedule("lr_schedule", self.lr_schedule)
        if self.model.use_lstm and not self.capabilities.recurrent:
            # A custom algorithm's model (a subclass outside this package) is named by its own class.
            builtin = type(self).__module__.startswith("kuberl.spec.algorithms.")
            name = getattr(self, "algorithm", "") if builtin else type(self).__name__
            raise ValueError(
                f"model.use_lstm: {name} cannot train a recurrent policy ({', '.join(supporting('recurrent'))} "
                "can); remove use_lstm or pick one of those algorithms"
            )
        return self


def supporting(feature: str) -> list[str]:
    """The algorithms whose capabilities turn `feature` on (a Capabilities field), in registry order."""
    from kuberl.spec.algorithms import capabilities

    return [name for name, caps in capabilities().items() if getattr(caps, feature)]
