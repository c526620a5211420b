"""Hyperparameters shared by the Q-learning algorithms (DQN, Ape-X): the optimizer, the Q-network and
its Rainbow parts, the prioritized-replay constants and checkpointing of the buffer. Each algorithm's own
config adds what differs (batch sizes, buffer size, exploration, replay ratio, target-update rule)."""

from __future__ import annotations

from typing import Literal, Protocol

from pydantic import Field, model_validator

from kuberl.spec.algorithms.base import AlgorithmConfigBase, ModelConfig, OffFloat, StoreBufferInCheckpoints


class QLearningConfigBase(AlgorithmConfigBase):
    """Fields DQN and Ape-X mean the same way (RLlib's names)."""

    lr: float = Field(
        5e-4, gt=0.0, description="Adam learning rate (the start value when lrSchedule is set)."
    )
    grad_clip: OffFloat = Field(
        40.0, gt=0.0, description="Clip the global gradient norm to this (off: no clipping)."
    )
    model: ModelConfig = Field(
        default_factory=lambda: ModelConfig(fcnet_hiddens=[256, 256], fcnet_activation="relu"),
        description=(
            "The Q-network: an MLP (default 256-256 ReLU). A custom model is built as "
            "Class(obs_space, action_space, customModelConfig) and must return Q-values [B, actions]."
        ),
    )
    prioritized_replay_alpha: float = Field(
        0.6, ge=0.0, description="Priority exponent α: 0 is uniform, 1 fully proportional to |TD error|."
    )
    prioritized_replay_eps: float = Field(
        1e-6, gt=0.0, description="Added to |TD error| so no transition's priority is ever zero."
    )
    double_q: bool = Field(
        True,
        description="Double DQN: the online network picks the next action, the target network values it.",
    )
    dueling: bool = Field(
        True, description="Dueling heads: Q = V + A − mean(A) on the shared MLP trunk (built-in model only)."
    )
    td_error_loss_fn: Literal["huber", "mse"] = Field(
        "huber", description="Loss on the TD error: Huber (δ=1, as in the DQN paper) or squared error."
    )
    num_atoms: int = Field(
        1,
        ge=1,
        description=(
            "Distributional Q-learning (C51, Bellemare et al. 2017): each Q(s, a) is a categorical "
            "distribution on numAtoms atoms evenly spaced over [vMin, vMax], trained by cross-entropy "
            "against the projected n-step target (prioritized replay then ranks by that cross-entropy). "
            "1: off (a scalar Q, the TD loss); C51 uses 51. Built-in model only."
        ),
    )
    v_min: float = Field(
        -10.0, description="The lowest atom of the distributional support (with numAtoms > 1)."
    )
    v_max: float = Field(
        10.0,
        description=(
            "The highest atom of the distributional support; returns outside [vMin, vMax] are clipped "
            "to it, so it should bound the discounted return."
        ),
    )
    noisy: bool = Field(
        False,
        description=(
            "Noisy nets (Fortunato et al. 2018): the Q head's output layers are factorised-Gaussian "
            "NoisyLinear layers whose learned noise explores; new noise for every action step and every "
            "update. Greedy evaluation uses the mean weights. Built-in model only."
        ),
    )
    sigma0: float = Field(
        0.5, gt=0.0, description="σ0 of the noisy layers' initial noise scale σ = σ0/√fan_in (with noisy)."
    )
    store_buffer_in_checkpoints: StoreBufferInCheckpoints = False

    @model_validator(mode="after")
    def _q_head(self) -> QLearningConfigBase:
        if self.num_atoms > 1 and not self.v_min < self.v_max:
            raise ValueError(
                f"v_min ({self.v_min}) must be below v_max ({self.v_max}): they bound the distributional support"
            )
        if (self.num_atoms > 1 or self.noisy) and self.model.custom_model:
            part = "num_atoms > 1 (C51)" if self.num_atoms > 1 else "noisy"
            raise ValueError(
                f"{part} builds kuberl's own Q head; model.custom_model must return plain Q-values and "
                "cannot be combined with it"
            )
        return self


class _ReplaySettings(Protocol):
    """What check_replay reads; each Q-learning config declares these with its own defaults."""

    # Read-only members, so a config's narrower types satisfy them.
    @property
    def num_steps_sampled_before_learning_starts(self) -> int: ...
    @property
    def buffer_size(self) -> int: ...
    @property
    def train_batch_size(self) -> int: ...
    @property
    def n_step(self) -> int: ...
    @property
    def rollout_fragment_length(self) -> int: ...


def check_replay(config: _ReplaySettings) -> None:
    """Replay settings that cannot work together, with the reason (raised as the config's error). A
    MeanStdFilter is refused by the capability rule (kuberl.spec.combinations.capability_problems)."""
    if config.num_steps_sampled_before_learning_starts > config.buffer_size:
        raise ValueError(
            f"num_steps_sampled_before_learning_starts ({config.num_steps_sampled_before_learning_starts}) "
            f"must not exceed buffer_size ({config.buffer_size}): the buffer would overwrite "
            "transitions before learning starts"
        )
    if config.train_batch_size > config.buffer_size:
        raise ValueError(
            f"train_batch_size ({config.train_batch_size}) must not exceed buffer_size "
            f"({config.buffer_size}): a batch would repeat transitions"
        )
    if config.n_step > config.rollout_fragment_length:
        raise ValueError(
            f"n_step ({config.n_step}) must not exceed rollout_fragment_length "
            f"({config.rollout_fragment_length}): n-step returns are cut at the end of each fragment"
        )
