"""What every offline algorithm's config (BC, MARWIL, CQL) shares; the data they read is spec.input
(kuberl.spec.offline)."""

from __future__ import annotations

from pydantic import AliasChoices, Field

from kuberl.spec.algorithms.base import AlgorithmConfigBase, OffFloat


class OfflineConfigBase(AlgorithmConfigBase):
    """Hyperparameters every offline algorithm (BC, MARWIL, CQL) shares: how much recorded data one
    training iteration consumes. `timesteps` (and stop.timesteps) count the rows trained on."""

    train_batch_size: int = Field(
        256,
        ge=1,
        validation_alias=AliasChoices(
            "trainBatchSize", "train_batch_size", "train_batch_size_per_learner", "trainBatchSizePerLearner"
        ),
        description="Recorded transitions per gradient step (a minibatch drawn through the shuffle buffer).",
    )
    # BC's and MARWIL's Adam (CQL sets its own learning rates and clipping).
    lr: float = Field(
        1e-3, gt=0.0, description="Adam learning rate (the start value when lrSchedule is set)."
    )
    grad_clip: OffFloat = Field(
        None, gt=0.0, description="Clip the global gradient norm to this (off: no clipping, as RLlib)."
    )
    updates_per_iteration: int = Field(
        100,
        ge=1,
        validation_alias=AliasChoices(
            "updatesPerIteration", "updates_per_iteration", "dataset_num_iters_per_learner"
        ),
        description="Gradient steps per training iteration; an iteration trains on trainBatchSize × this rows.",
    )
