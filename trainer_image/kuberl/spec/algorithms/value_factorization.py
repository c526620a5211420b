"""Hyperparameters shared by the value-factorization algorithms (QMIX, VDN; the algorithms are
kuberl.algorithms.qmix and kuberl.algorithms.vdn): one joint learner over all agents of a cooperative
PettingZoo ParallelEnv, trained from a replay of joint transitions."""

from __future__ import annotations

from typing import ClassVar, Literal

from pydantic import AliasChoices, Field, model_validator

from kuberl.spec.algorithms.base import (
    AlgorithmConfigBase,
    ModelConfig,
    OffFloat,
    ScheduleType,
    StoreBufferInCheckpoints,
    _check_schedule,
)
from kuberl.spec.capabilities import DISCRETE, Capabilities


class ValueFactorizationConfigBase(AlgorithmConfigBase):
    """Fields QMIX and VDN mean the same way (RLlib's names where RLlib has them)."""

    # Discrete actions per agent, masked by the agents' own action_mask, a GRU agent network with
    # model.useLstm; no external simulators, multiAgent, filters, offline data or data-parallel learners: one joint learner, fed by its
    # own joint env runners (kuberl.core.multi_agent.joint_runner).
    capabilities: ClassVar[Capabilities] = Capabilities(
        DISCRETE,
        action_masks="own",
        recurrent=True,
        observation_filter=False,
        offline_output=False,
        joint_agents=True,
    )

    lr: float = Field(
        5e-4, gt=0.0, description="Adam learning rate (the start value when lrSchedule is set)."
    )
    grad_clip: OffFloat = Field(
        10.0, gt=0.0, description="Clip the global gradient norm to this (off: no clipping)."
    )
    model: ModelConfig = Field(
        default_factory=lambda: ModelConfig(fcnet_hiddens=[64, 64], fcnet_activation="relu"),
        description=(
            "The agent network, shared by all agents: an MLP over the agent's flattened observation and a "
            "one-hot agent id, one Q-value per action (default 64-64 ReLU). useLstm: a GRU cell of "
            "lstmCellSize after the MLP (the paper's agent), replayed as whole episodes (sequences of at "
            "most maxSeqLen steps, each from the GRU state it started with)."
        ),
    )
    train_batch_size: int = Field(
        32, ge=1, description="Joint transitions sampled from the replay buffer per gradient step."
    )
    rollout_fragment_length: int = Field(
        4,
        ge=1,
        description=(
            "Vector steps per runner per iteration: an iteration samples rolloutFragmentLength × "
            "envsPerRunner × max(envRunners, 1) joint env steps."
        ),
    )
    buffer_size: int = Field(
        5_000,
        ge=1,
        validation_alias=AliasChoices("bufferSize", "buffer_size", "replay_buffer_capacity"),
        description="Replay buffer capacity in joint transitions; the oldest are overwritten first.",
    )
    num_steps_sampled_before_learning_starts: int = Field(
        500,
        ge=0,
        validation_alias=AliasChoices(
            "numStepsSampledBeforeLearningStarts",
            "num_steps_sampled_before_learning_starts",
            "learning_starts",
            "learningStarts",
        ),
        description="Joint env steps collected before the first gradient step.",
    )
    target_network_update_freq: int = Field(
        200,
        ge=1,
        description="Env steps between target-network updates (agent network and mixer together).",
    )
    tau: float = Field(
        1.0, gt=0.0, le=1.0, description="Each target update sets target ← τ·online + (1−τ)·target."
    )
    epsilon: ScheduleType = Field(
        default_factory=lambda: [(0, 1.0), (10_000, 0.05)],
        description=(
            "Each agent's epsilon-greedy exploration as a piecewise-linear schedule [[timestep, epsilon], …]; "
            "constant after the last point."
        ),
    )
    double_q: bool = Field(
        True,
        description=(
            "Double Q: the online agent network picks each agent's next action, the target networks value "
            "the joint action."
        ),
    )
    td_error_loss_fn: Literal["huber", "mse"] = Field(
        "mse", description="Loss on the joint TD error: squared error (the paper's) or Huber (δ=1)."
    )
    num_updates_per_iteration: int = Field(1, ge=1, description="Gradient steps per iteration.")
    store_buffer_in_checkpoints: StoreBufferInCheckpoints = False

    @model_validator(mode="after")
    def _consistent(self) -> ValueFactorizationConfigBase:
        _check_schedule("epsilon", self.epsilon)
        bad = [e for _, e in self.epsilon if not 0.0 <= e <= 1.0]
        if bad:
            raise ValueError(f"epsilon values must lie in [0, 1], got {bad}")
        if self.num_steps_sampled_before_learning_starts > self.buffer_size:
            raise ValueError(
                f"num_steps_sampled_before_learning_starts ({self.num_steps_sampled_before_learning_starts}) "
                f"must not exceed buffer_size ({self.buffer_size})"
            )
        if self.train_batch_size > self.buffer_size:
            raise ValueError(
                f"train_batch_size ({self.train_batch_size}) must not exceed buffer_size ({self.buffer_size})"
            )
        if self.model.custom_model:
            raise ValueError(
                "model.custom_model: QMIX and VDN build their own agent network (an MLP over observation "
                "and agent id); set fcnet_hiddens/fcnet_activation instead"
            )
        return self
