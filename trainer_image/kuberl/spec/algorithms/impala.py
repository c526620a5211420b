"""IMPALA's hyperparameters (the algorithm itself is kuberl.algorithms.impala).

`VTraceConfig` holds what IMPALA and APPO share (asynchronous sampling, V-trace, the learner's batch);
it declares no `algorithm`, so the discovery in kuberl.spec.algorithms skips it.
"""

from __future__ import annotations

from typing import ClassVar, Literal

from pydantic import AliasChoices, Field, model_validator

from kuberl.spec.algorithms.base import AlgorithmConfigBase, OffFloat
from kuberl.spec.capabilities import ALL_SPACES, Capabilities


class VTraceConfig(AlgorithmConfigBase):
    """Asynchronous actor-learner training with V-trace targets (shared by IMPALA and APPO)."""

    train_batch_size: int = Field(
        500,
        ge=1,
        description=(
            "Environment steps per learner update, rounded up to whole sample fragments "
            "(rolloutFragmentLength × envsPerRunner steps each)."
        ),
    )
    rollout_fragment_length: int = Field(
        50,
        ge=1,
        description=(
            "Time steps per sub-environment in one sample request; V-trace runs over sequences of this length."
        ),
    )
    num_epochs: int = Field(
        1,
        ge=1,
        validation_alias=AliasChoices("numEpochs", "num_epochs", "num_sgd_iter", "numSgdIter"),
        description="Passes over each train batch (IMPALA's paper: 1).",
    )
    minibatch_size: int | None = Field(
        None,
        ge=1,
        validation_alias=AliasChoices(
            "minibatchSize", "minibatch_size", "sgd_minibatch_size", "sgdMinibatchSize"
        ),
        description=(
            "Environment steps per gradient step, in whole sequences of rolloutFragmentLength "
            "(null: the whole train batch in one step)."
        ),
    )
    lr: float = Field(5e-4, gt=0.0, description="Learning rate (the start value when lrSchedule is set).")
    grad_clip: OffFloat = Field(
        40.0, gt=0.0, description="Clip the global gradient norm to this (off: no clipping)."
    )
    vf_loss_coeff: float = Field(0.5, ge=0.0, description="Weight of the value loss.")
    entropy_coeff: float = Field(0.01, ge=0.0, description="Weight of the entropy bonus.")
    vtrace_clip_rho_threshold: OffFloat = Field(
        1.0,
        gt=0.0,
        description="ρ̄: clip of the importance ratio in the V-trace value targets (off: unclipped).",
    )
    vtrace_clip_pg_rho_threshold: OffFloat = Field(
        1.0,
        gt=0.0,
        description="ρ̄ of the policy-gradient advantages (off: unclipped).",
    )
    broadcast_interval: int = Field(
        1,
        ge=1,
        description=(
            "Learner updates between weight broadcasts to the env runners. Larger saves bandwidth and "
            "raises the policy lag."
        ),
    )
    max_requests_in_flight_per_env_runner: int = Field(
        2,
        ge=1,
        description=(
            "Sample requests queued at each env runner, so it starts the next fragment while the learner "
            "trains on the last one. More raises throughput and the policy lag."
        ),
    )
    replay_proportion: float = Field(
        0.0,
        ge=0.0,
        description=(
            "Replayed train batches per fresh one (e.g. 0.5: one replayed update every second fresh "
            "update), drawn uniformly from the last replayBufferNumSlots batches. 0 disables replay."
        ),
    )
    replay_buffer_num_slots: int = Field(
        0, ge=0, description="Train batches kept for replay (0: no replay buffer)."
    )
    min_sample_timesteps_per_iteration: int = Field(
        4000,
        ge=0,
        description=(
            "A train() call (one reported iteration) runs learner updates until the runners sampled at "
            "least this many environment steps in it (and at least one update was made)."
        ),
    )

    @model_validator(mode="after")
    def _consistent(self) -> VTraceConfig:
        if self.minibatch_size is not None:
            if self.minibatch_size > self.train_batch_size:
                raise ValueError(
                    f"minibatch_size ({self.minibatch_size}) must not exceed train_batch_size "
                    f"({self.train_batch_size})"
                )
            if self.minibatch_size < self.rollout_fragment_length:
                raise ValueError(
                    f"minibatch_size ({self.minibatch_size}) must hold at least one sequence of "
                    f"rollout_fragment_length ({self.rollout_fragment_length}) steps: V-trace runs over "
                    "whole sequences"
                )
        if self.replay_proportion > 0.0 and self.replay_buffer_num_slots < 1:
            raise ValueError(
                f"replay_proportion ({self.replay_proportion}) needs replay_buffer_num_slots ≥ 1 "
                "(there is nothing to replay from)"
            )
        return self


class IMPALAConfig(VTraceConfig):
    """IMPALA (Espeholt et al. 2018, https://arxiv.org/abs/1802.01561): env runners sample
    continuously with a lagging policy; the learner corrects with V-trace."""

    implementation: ClassVar[str] = "kuberl.algorithms.impala:IMPALA"
    capabilities: ClassVar[Capabilities] = Capabilities(ALL_SPACES, recurrent=True)
    algorithm: Literal["IMPALA"] = Field(
        "IMPALA", exclude=True, description="Discriminator; set from spec.algorithm."
    )
