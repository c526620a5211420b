"""What a resumed run may change. Hyperparameters (learning rates, entropy, clipping, stop criteria,
checkpoint and evaluation settings, resources) take effect on resume; what shapes the saved state — the
algorithm, the environment (its spaces), the networks, the observation filter, reward normalization, the agents' policies —
cannot, and a change is refused naming the field, instead of a shape-mismatch traceback or weights
silently loaded into a different problem."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from kuberl.spec.errors import SpecError
from kuberl.spec.job import RLTrainingJob
from kuberl.spec.load import parse_job

Problem = tuple[str, str]


def _fixed(job: RLTrainingJob) -> dict[str, Any]:
    """The fields a checkpoint's state depends on, in wire form (defaults filled in)."""
    spec = job.spec
    config = spec.config.to_wire()
    multi_agent = spec.multi_agent.to_wire() if spec.multi_agent is not None else None
    return {
        "spec.algorithm": spec.algorithm,
        "spec.env": spec.env,
        "spec.config.model": config.get("model"),
        "spec.config.observationFilter": config.get("observationFilter"),
        # The value function learned returns in the normalized rewards' scale.
        "spec.config.normalizeRewards": config.get("normalizeRewards"),
        "spec.multiAgent": multi_agent,
    }


def fixed_field_changes(before: RLTrainingJob, after: RLTrainingJob, *, since: str) -> list[Problem]:
    """Fields that shape the saved state and differ between two versions of a job. The operator calls it
    on an edit of a started job (`before`: the spec its current attempt runs), so a change a resumed run
    would refuse is refused at the edit, in the job's status, instead of failing every later attempt."""
    old, new = _fixed(before), _fixed(after)
    return [
        (
            field,
            f"cannot change once the job has started (was {old[field]!r} in {since}, now {new[field]!r}): "
            "its checkpoints hold the algorithm, env, networks and agents it was trained with; set it "
            "back, or create a new job with a new checkpoint location",
        )
        for field in new
        if new[field] != old[field]
    ]


def resume_problems(saved: Mapping[str, Any], job: RLTrainingJob, *, checkpoint: str) -> list[Problem]:
    """Fields of `job` that differ from the job a checkpoint was written by (`saved`, its job.json)."""
    try:
        before = _fixed(parse_job(saved, source=checkpoint))
    except SpecError as exc:
        return [("spec.resume", f"{checkpoint} was written by a job this version cannot read: {exc}")]
    now = _fixed(job)
    return [
        (
            field,
            f"changed since {checkpoint} (was {before[field]!r}, now {now[field]!r}); a resumed run keeps "
            "the algorithm, env, networks and agents it was trained with: set it back, or start afresh "
            "with resume: never and a new checkpoint location",
        )
        for field in now
        if now[field] != before[field]
    ]
