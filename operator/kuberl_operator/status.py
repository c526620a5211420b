"""Pure status derivation: (job, RayJob status, trainer progress, now) -> the job's new status.

An explicit transition table, as KubeRay's RayJob reconciler is a state machine: every pair of KubeRay
`jobDeploymentStatus` / `jobStatus` maps to one kuberl phase, and a failure maps to either a retry
(attempt + 1, resuming from the newest checkpoint) or the terminal `Failed` phase.
RayJob states: https://docs.ray.io/en/latest/cluster/kubernetes/getting-started/rayjob-quick-start.html
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Literal

from kuberl.spec import Condition, RLTrainingJob, RLTrainingJobStatus, SpecError
from kuberl_operator.builders import child_names

Phase = Literal["Pending", "Running", "Succeeded", "Failed", "Suspended"]
# What a RayJob's state means to kuberl before retries and suspension are considered.
Outcome = Literal["pending", "running", "succeeded", "failed", "suspended"]

COND_VALID = "Valid"
COND_RUNNING = "Running"
COND_SUSPENDED = "Suspended"
COND_SUCCEEDED = "Succeeded"
COND_FAILED = "Failed"
COND_SPEC_CHANGE_PENDING = "SpecChangePending"
PHASE_CONDITIONS = (COND_RUNNING, COND_SUSPENDED, COND_SUCCEEDED, COND_FAILED)

TERMINAL_PHASES = ("Succeeded", "Failed")

# (jobDeploymentStatus, jobStatus) -> outcome; "*" matches any jobStatus. First match wins.
# jobStatus SUCCEEDED/FAILED/STOPPED are final for the Ray job even while KubeRay is still tearing down.
TRANSITIONS: tuple[tuple[str, str, Outcome], ...] = (
    ("*", "SUCCEEDED", "succeeded"),
    ("*", "FAILED", "failed"),
    ("*", "STOPPED", "failed"),
    ("", "*", "pending"),
    ("New", "*", "pending"),
    ("Initializing", "*", "pending"),
    ("Waiting", "*", "pending"),
    ("Retrying", "*", "pending"),
    ("Running", "RUNNING", "running"),
    ("Running", "*", "pending"),  # cluster up, Ray job submitted but not started (PENDING or unknown)
    ("Complete", "*", "failed"),  # complete without SUCCEEDED: the entrypoint did not succeed
    ("Failed", "*", "failed"),
    ("ValidationFailed", "*", "failed"),
    ("Suspending", "*", "suspended"),
    ("Suspended", "*", "suspended"),
)


def outcome_of(deployment_status: str, job_status: str) -> Outcome:
    for deployment, job, outcome in TRANSITIONS:
        if deployment in ("*", deployment_status) and job in ("*", job_status):
            return outcome
    # An unknown (newer KubeRay) state: not a failure, keep waiting and say so in the message.
    return "pending"


@dataclass(frozen=True)
class Transition:
    """The derived status and what the reconciler must do about it."""

    status: RLTrainingJobStatus
    retry: bool = False  # create the children of status.attempt (a fresh RayJob resuming with `auto`)
    previous_phase: str | None = None

    @property
    def phase_changed(self) -> bool:
        return self.status.phase != self.previous_phase


def rfc3339(now: datetime) -> str:
    return now.strftime("%Y-%m-%dT%H:%M:%SZ")


def set_condition(
    conditions: list[Condition],
    type_: str,
    status: Literal["True", "False", "Unknown"],
    *,
    reason: str,
    message: str,
    now: datetime,
    generation: int | None,
) -> list[Condition]:
    """metav1 semantics: lastTransitionTime moves only when `status` flips."""

    def updated(cond: Condition | None) -> Condition:
        if cond is not None and cond.status == status and cond.last_transition_time:
            since = cond.last_transition_time
        else:
            since = rfc3339(now)
        return Condition(
            type=type_,
            status=status,
            reason=reason,
            message=message,
            last_transition_time=since,
            observed_generation=generation,
        )

    out = [updated(cond) if cond.type == type_ else cond for cond in conditions]
    if not any(cond.type == type_ for cond in conditions):
        out.append(updated(None))
    return out


def _generation(job: RLTrainingJob) -> int | None:
    gen = (job.metadata.model_extra or {}).get("generation")
    return int(gen) if isinstance(gen, int) else None


def _with_phase(
    status: RLTrainingJobStatus,
    phase: Phase,
    *,
    reason: str,
    message: str,
    now: datetime,
    generation: int | None,
) -> RLTrainingJobStatus:
    conditions = list(status.conditions)
    for cond_type in PHASE_CONDITIONS:
        on = cond_type == phase
        conditions = set_condition(
            conditions,
            cond_type,
            "True" if on else "False",
            reason=reason if on else phase,
            message=message if on else "",
            now=now,
            generation=generation,
        )
    update: dict[str, Any] = {"phase": phase, "conditions": conditions, "message": message}
    if phase in TERMINAL_PHASES and status.completion_time is None:
        update["completion_time"] = rfc3339(now)
    return status.model_copy(update=update)


def _progress(status: RLTrainingJobStatus, progress: Mapping[str, Any] | None) -> RLTrainingJobStatus:
    """Mirror the trainer's /status; missing keys (or an unreachable trainer) keep the last values."""
    if not progress:
        return status
    keys = {
        "iteration": ("iteration", "trainingIteration", "training_iteration"),
        "timesteps": ("timesteps", "timestepsTotal", "timesteps_total", "envStepsTotal", "env_steps_total"),
        "episode_return_mean": ("episodeReturnMean", "episode_return_mean"),
        "last_checkpoint": ("lastCheckpoint", "last_checkpoint"),
    }
    update: dict[str, Any] = {}
    for field, names in keys.items():
        for name in names:
            value = progress.get(name)
            if value is None:
                continue
            try:
                update[field] = (
                    int(value)
                    if field in ("iteration", "timesteps")
                    else float(value)
                    if field == "episode_return_mean"
                    else str(value)
                )
            except (TypeError, ValueError):
                continue  # a trainer bug must not break the status of the job
            break
    return status.model_copy(update=update)


def initial_status(job: RLTrainingJob, *, now: datetime) -> RLTrainingJobStatus:
    """Status written before any child exists: the names of attempt 0, so a restart never duplicates."""
    names = child_names(job, 0)
    generation = _generation(job)
    base = RLTrainingJobStatus(
        ray_job_name=names.ray_job,
        config_map_name=names.config_map,
        attempt=0,
        start_time=rfc3339(now),
        observed_generation=generation,
    )
    base = base.model_copy(
        update={
            "conditions": set_condition(
                [], COND_VALID, "True", reason="SpecValid", message="", now=now, generation=generation
            )
        }
    )
    return _with_phase(
        base, "Pending", reason="Creating", message="creating the RayJob", now=now, generation=generation
    )


def invalid_status(
    current: RLTrainingJobStatus | None, error: SpecError, *, generation: int | None, now: datetime
) -> RLTrainingJobStatus:
    """An invalid spec: Failed, with every problem's field path in the Valid condition's message."""
    status = current or RLTrainingJobStatus()
    message = _problems(error)
    conditions = set_condition(
        list(status.conditions),
        COND_VALID,
        "False",
        reason="InvalidSpec",
        message=message,
        now=now,
        generation=generation,
    )
    status = status.model_copy(update={"conditions": conditions, "observed_generation": generation})
    return _with_phase(
        status, "Failed", reason="InvalidSpec", message=message, now=now, generation=generation
    )


def invalid_edit_status(
    current: RLTrainingJobStatus, error: SpecError, *, generation: int | None, now: datetime
) -> RLTrainingJobStatus:
    """An edit that made the spec of a job with children invalid: Valid=False naming the field, phase
    unchanged. Its RayJob keeps the last valid spec (its ConfigMap), so nothing already trained is lost."""
    message = _problems(error) + "; the current attempt keeps running with the last valid spec"
    conditions = set_condition(
        list(current.conditions),
        COND_VALID,
        "False",
        reason="InvalidSpecEdit",
        message=message,
        now=now,
        generation=generation,
    )
    return current.model_copy(update={"conditions": conditions})


def valid_again(status: RLTrainingJobStatus, *, generation: int | None, now: datetime) -> RLTrainingJobStatus:
    """Valid=True once a spec parses again (after an invalid edit was fixed); unchanged otherwise."""
    if all(c.status == "True" for c in status.conditions if c.type == COND_VALID):
        return status
    conditions = set_condition(
        list(status.conditions),
        COND_VALID,
        "True",
        reason="SpecValid",
        message="",
        now=now,
        generation=generation,
    )
    return status.model_copy(update={"conditions": conditions})


def _problems(error: SpecError) -> str:
    problems = error.problems or [("spec", "invalid")]
    return "; ".join(f"{path or 'spec'}: {reason}" for path, reason in problems)


def derive_status(
    job: RLTrainingJob,
    rayjob_status: Mapping[str, Any] | None,
    progress: Mapping[str, Any] | None,
    *,
    now: datetime,
) -> Transition:
    """The next status of a valid job whose children exist (or are being created).

    `rayjob_status` is the RayJob's `.status` (None: not created or not observed yet);
    `progress` the trainer's `/status` JSON (None: unreachable).
    """
    current = job.status or RLTrainingJobStatus()
    previous = current.phase
    generation = _generation(job)
    status = _progress(current, progress)
    if previous in TERMINAL_PHASES:
        # Terminal phases are final; only late progress (e.g. the last checkpoint) is still mirrored.
        return Transition(status=status, previous_phase=previous)

    def enter(
        phase: Phase, reason: str, message: str, *, base: RLTrainingJobStatus = status, retry: bool = False
    ) -> Transition:
        """`base` moved to `phase` (its Ready condition and timestamps: _with_phase)."""
        moved = _with_phase(base, phase, reason=reason, message=message, now=now, generation=generation)
        return Transition(status=moved, retry=retry, previous_phase=previous)

    ray = rayjob_status or {}
    deployment = str(ray.get("jobDeploymentStatus") or "")
    job_status = str(ray.get("jobStatus") or "")
    outcome = outcome_of(deployment, job_status) if rayjob_status is not None else "pending"
    ray_message = str(ray.get("message") or "")

    if outcome == "succeeded":
        return enter("Succeeded", "RayJobSucceeded", "training finished")
    if outcome == "failed":
        reason = str(ray.get("reason") or "")  # KubeRay: AppFailed, DeadlineExceeded, …
        detail = f"RayJob {status.ray_job_name} failed ({deployment or '-'}/{job_status or '-'})" + (
            f": {ray_message}" if ray_message else ""
        )
        if status.attempt < job.spec.backoff_limit:
            attempt = status.attempt + 1
            names = child_names(job, attempt)
            retried = status.model_copy(
                update={
                    "attempt": attempt,
                    "ray_job_name": names.ray_job,
                    "config_map_name": names.config_map,
                }
            )
            message = f"{detail}; retry {attempt}/{job.spec.backoff_limit} resumes from the newest checkpoint"
            return enter("Pending", "Retrying", message, base=retried, retry=True)
        message = f"{detail}; backoffLimit {job.spec.backoff_limit} reached"
        return enter("Failed", _reason(reason, "BackoffLimitExceeded"), message)
    if job.spec.suspend:
        return enter("Suspended", "Suspended", "suspended; checkpoints kept")
    if outcome == "running":
        return enter("Running", "RayJobRunning", "training")
    # pending, or suspended in KubeRay while the spec says run: the reconciler is resuming it.
    message = (
        "resuming from the newest checkpoint"
        if outcome == "suspended"
        else f"waiting for the Ray cluster ({deployment or 'not started'})"
    )
    return enter("Pending", "Starting", message)


def _reason(value: str, fallback: str) -> str:
    """KubeRay's reason when it is a valid metav1 reason (CamelCase), else ours."""
    return value if value.replace("_", "").isalnum() and value[:1].isalpha() else fallback
