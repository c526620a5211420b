"""DQN's hyperparameters (the algorithm itself is kuberl.algorithms.dqn)."""

from __future__ import annotations

from typing import ClassVar, Literal

from pydantic import AliasChoices, Field, model_validator

from kuberl.spec.algorithms.base import ScheduleType, _check_schedule
from kuberl.spec.algorithms.q_learning import QLearningConfigBase, check_replay
from kuberl.spec.capabilities import DISCRETE, Capabilities


class DQNConfig(QLearningConfigBase):
    """Deep Q-Network (Mnih et al. 2015) with Rainbow's parts (Hessel et al. 2018,
    https://arxiv.org/abs/1710.02298): double Q, dueling heads, prioritized replay, n-step returns."""

    implementation: ClassVar[str] = "kuberl.algorithms.dqn:DQN"
    capabilities: ClassVar[Capabilities] = Capabilities(
        DISCRETE, multi_agent=True, action_masks="own", observation_filter=False, multi_learner=True
    )
    # With resources.learners > 1 every replayed minibatch of train_batch_size is split over the ranks.
    sharded_batch: ClassVar[str] = "train_batch_size"
    algorithm: Literal["DQN"] = Field(
        "DQN", exclude=True, description="Discriminator; set from spec.algorithm."
    )

    train_batch_size: int = Field(
        32, ge=1, description="Transitions sampled from the replay buffer per gradient step (RLlib's name)."
    )
    rollout_fragment_length: int = Field(
        4,
        ge=1,
        description=(
            "Vector steps each env runner takes per iteration; an iteration samples "
            "rolloutFragmentLength × envRunners × envsPerRunner env steps."
        ),
    )
    buffer_size: int = Field(
        50_000,
        ge=1,
        validation_alias=AliasChoices("bufferSize", "buffer_size", "capacity", "replay_buffer_capacity"),
        description="Replay buffer capacity in transitions; the oldest are overwritten first.",
    )
    prioritized_replay: bool = Field(
        False, description="Prioritized experience replay (Schaul et al. 2016, proportional variant)."
    )
    prioritized_replay_beta: float = Field(
        0.4, ge=0.0, le=1.0, description="Importance-weight exponent β at the start of training."
    )
    prioritized_replay_beta_annealing_timesteps: int | None = Field(
        None,
        ge=1,
        description="Anneal β linearly to 1 over this many env steps (the paper's schedule); null keeps it fixed.",
    )
    n_step: int = Field(
        1, ge=1, description="n-step returns: bootstrap after n rewards (cut at episode and fragment ends)."
    )
    target_network_update_freq: int = Field(
        500,
        ge=1,
        description=(
            "Env steps between target-network updates (checked once per iteration, so at most one "
            "update per iteration)."
        ),
    )
    tau: float = Field(
        1.0,
        gt=0.0,
        le=1.0,
        description="Each target update sets target ← τ·online + (1−τ)·target; 1 is DQN's hard copy.",
    )
    num_steps_sampled_before_learning_starts: int = Field(
        1000,
        ge=0,
        validation_alias=AliasChoices(
            "numStepsSampledBeforeLearningStarts",
            "num_steps_sampled_before_learning_starts",
            "learning_starts",
            "learningStarts",
        ),
        description="Env steps collected (with the epsilon schedule) before the first gradient step.",
    )
    epsilon: ScheduleType = Field(
        default_factory=lambda: [(0, 1.0), (10_000, 0.05)],
        description=(
            "Epsilon-greedy exploration as a piecewise-linear schedule [[timestep, epsilon], …] "
            "(RLlib's `epsilon`); constant after the last point. With noisy: true and no epsilon "
            "given it is 0: the noisy layers explore."
        ),
    )
    training_intensity: float | None = Field(
        None,
        gt=0.0,
        description=(
            "Replay ratio: transitions trained on per env step sampled. Each iteration makes "
            "round(trainingIntensity × sampled / trainBatchSize) gradient steps (fractions carry over). "
            "Null: numUpdatesPerIteration."
        ),
    )
    num_updates_per_iteration: int = Field(
        1, ge=1, description="Gradient steps per iteration when trainingIntensity is null."
    )

    @model_validator(mode="after")
    def _consistent(self) -> DQNConfig:
        if self.noisy and "epsilon" not in self.model_fields_set:
            # Written past validate_assignment: re-validating here would run this validator again.
            self.__dict__["epsilon"] = [(0, 0.0)]
        _check_schedule("epsilon", self.epsilon)
        bad = [e for _, e in self.epsilon if not 0.0 <= e <= 1.0]
        if bad:
            raise ValueError(f"epsilon values must lie in [0, 1], got {bad}")
        check_replay(self)
        return self
