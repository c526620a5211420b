"""Hyperparameters shared by the off-policy actor-critics (SAC, TD3, DDPG): replay, target networks,
learning starts and the update-to-data ratio. Not an algorithm itself (no `algorithm` field), so the
discovery in this package skips it; each algorithm's own module adds what is specific to it."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import AliasChoices, Field, model_validator

from kuberl.spec.algorithms.base import AlgorithmConfigBase, ModelConfig, OffFloat, StoreBufferInCheckpoints
from kuberl.spec.base import WireModel


class OffPolicyReplayConfig(WireModel):
    """The replay buffer (RLlib's `replay_buffer_config`)."""

    type: Literal["ReplayBuffer", "PrioritizedReplayBuffer"] = Field(
        "ReplayBuffer",
        description=(
            "ReplayBuffer samples uniformly; PrioritizedReplayBuffer samples by |TD error| "
            "(Schaul et al. 2016) and weights the critic loss by importance weights."
        ),
    )
    capacity: int = Field(1_000_000, ge=1, description="Transitions kept; the oldest are overwritten.")
    prioritized_replay_alpha: float = Field(
        0.6, ge=0.0, description="Prioritized replay: how strongly priorities shape sampling (0: uniform)."
    )
    prioritized_replay_beta: float = Field(
        0.4,
        ge=0.0,
        le=1.0,
        description="Prioritized replay: importance-weight exponent (1: full correction).",
    )
    prioritized_replay_eps: float = Field(
        1e-6, gt=0.0, description="Prioritized replay: added to |TD error| so no transition gets priority 0."
    )


def _relu_256() -> ModelConfig:
    return ModelConfig(fcnet_hiddens=[256, 256], fcnet_activation="relu")


class OffPolicyActorCriticConfig(AlgorithmConfigBase):
    """Fields every off-policy actor-critic shares. `lr` is the default for the actor, critic and
    (SAC) temperature learning rates; each can be set apart."""

    lr: float = Field(3e-4, gt=0.0, description="Default learning rate of every optimizer (Adam).")
    grad_clip: OffFloat = Field(
        None, gt=0.0, description="Clip each network's global gradient norm to this (off: no clipping)."
    )
    model: ModelConfig = Field(
        default_factory=_relu_256,
        description=(
            "Hidden layers and activation of the actor and of each critic (fcnetHiddens, "
            "fcnetActivation); the other model fields do not apply."
        ),
    )
    actor_lr: float | None = Field(None, gt=0.0, description="Actor learning rate (null: lr).")
    critic_lr: float | None = Field(None, gt=0.0, description="Critic learning rate (null: lr).")
    tau: float = Field(
        0.005, gt=0.0, le=1.0, description="Polyak coefficient of the target networks: θ' ← τθ + (1−τ)θ'."
    )
    train_batch_size: int = Field(
        256, ge=1, description="Transitions per gradient step, sampled from replay."
    )
    replay_buffer_config: OffPolicyReplayConfig = Field(
        default_factory=OffPolicyReplayConfig, description="Replay buffer type, capacity and priorities."
    )
    store_buffer_in_checkpoints: StoreBufferInCheckpoints = False
    num_steps_sampled_before_learning_starts: int = Field(
        1000,
        ge=0,
        validation_alias=AliasChoices(
            "numStepsSampledBeforeLearningStarts",
            "num_steps_sampled_before_learning_starts",
            "learning_starts",
            "learningStarts",
        ),
        description=(
            "Env steps collected before the first gradient step (SB3's learning_starts). With randomWarmup "
            "these steps use uniformly random actions."
        ),
    )
    random_warmup: bool = Field(
        True,
        description="Act uniformly at random until learning starts (as SB3 and the TD3 paper do).",
    )
    rollout_fragment_length: int = Field(
        64,
        ge=1,
        description=(
            "Vector steps each runner takes per iteration; the updates for those steps follow. Smaller: "
            "fresher behaviour policy, more per-iteration overhead."
        ),
    )
    updates_per_step: float | None = Field(
        None,
        gt=0.0,
        description=(
            "Gradient steps per sampled env step (SB3's gradient_steps / train_freq); default 1. "
            "Fractions accumulate across iterations."
        ),
    )
    training_intensity: float | None = Field(
        None,
        gt=0.0,
        description=(
            "RLlib's name for the same ratio, in transitions: trained transitions per sampled env step "
            "(updatesPerStep = trainingIntensity / trainBatchSize). Set at most one of the two."
        ),
    )
    n_step: int = Field(
        1, ge=1, description="n-step returns for the critic target (cut at episode and fragment ends)."
    )

    @model_validator(mode="before")
    @classmethod
    def _no_lr_schedule(cls, data: Any) -> Any:
        if isinstance(data, dict) and (data.get("lr_schedule") or data.get("lrSchedule")):
            raise ValueError(
                "lr_schedule is not supported by the off-policy actor-critics; set a constant lr"
            )
        return data

    @model_validator(mode="after")
    def _consistent_offpolicy(self) -> OffPolicyActorCriticConfig:
        if self.updates_per_step is not None and self.training_intensity is not None:
            raise ValueError(
                "set only one of updates_per_step and training_intensity (they are the same ratio in "
                "different units)"
            )
        if self.train_batch_size > self.replay_buffer_config.capacity:
            raise ValueError(
                f"train_batch_size ({self.train_batch_size}) exceeds replay_buffer_config.capacity "
                f"({self.replay_buffer_config.capacity})"
            )
        if self.n_step > self.rollout_fragment_length:
            raise ValueError(
                f"n_step ({self.n_step}) must not exceed rollout_fragment_length "
                f"({self.rollout_fragment_length}): n-step returns are summed inside one fragment"
            )
        if self.model.custom_model is not None:
            raise ValueError(
                "model.custom_model is not supported here: set model.fcnetHiddens/fcnetActivation"
            )
        return self

    def gradient_steps_per_env_step(self) -> float:
        if self.training_intensity is not None:
            return self.training_intensity / self.train_batch_size
        return 1.0 if self.updates_per_step is None else self.updates_per_step


class ExplorationConfig(WireModel):
    """Action noise of a deterministic actor (RLlib's `exploration_config`), in units of the action
    range's half-width (the actor's [-1, 1] space), as Stable-Baselines3 adds it."""

    type: Literal["GaussianNoise", "OrnsteinUhlenbeckNoise"] = Field(
        "GaussianNoise", description="Independent Gaussian noise, or temporally correlated OU noise."
    )
    stddev: float = Field(0.1, ge=0.0, description="GaussianNoise: standard deviation.")
    ou_theta: float = Field(0.15, ge=0.0, description="OrnsteinUhlenbeckNoise: mean reversion rate θ.")
    ou_sigma: float = Field(0.2, ge=0.0, description="OrnsteinUhlenbeckNoise: volatility σ.")
    ou_base_scale: float = Field(0.1, ge=0.0, description="OrnsteinUhlenbeckNoise: scale of the OU state.")
    initial_scale: float = Field(1.0, ge=0.0, description="Noise multiplier when learning starts.")
    final_scale: float = Field(1.0, ge=0.0, description="Noise multiplier after scaleTimesteps more steps.")
    scale_timesteps: int = Field(
        1, ge=1, description="Env steps over which the multiplier is annealed linearly."
    )
