"""Fields that BC and MARWIL share (BC is MARWIL with β = 0; both train kuberl.algorithms.families.marwil's
actor-critic from spec.input): the optimizer of that one network."""

from __future__ import annotations

from pydantic import Field

from kuberl.spec.algorithms.offline import OfflineConfigBase


class ImitationConfigBase(OfflineConfigBase):
    """BC's and MARWIL's Adam settings; the offline data fields are OfflineConfigBase's."""

    lr: float = Field(
        1e-3, gt=0.0, description="Adam learning rate (the start value when lrSchedule is set)."
    )
    grad_clip: float | None = Field(
        None, gt=0.0, description="Clip the global gradient norm to this (null: off, as RLlib)."
    )
