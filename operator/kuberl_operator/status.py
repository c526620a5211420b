"""Pure status derivation: (job, RayJob status, trainer progress, now) -> the job's new status.

An explicit transition table, as KubeRay's RayJob reconciler is a state machine: every pair of KubeRay
`jobDeploymentStatus` / `jobStatus` maps to one kuberl phase, and a failure maps to either a retry
(attempt + 1, resuming from the newest checkpoint) or the terminal `Failed` phase.
RayJob states: https://docs.ray.io/en/latest/cluster/kubernetes/getting-started/rayjob-quick-start.html
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Literal

from kuberl.spec import Condition, RLTrainingJob, RLTrainingJobStatus, SpecError
from kuberl.spec.job import CustomMetricStats
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
# True when a retry or a resume after suspend continues from a checkpoint that outlives the pod (s3://).
COND_CHECKPOINTS_PERSISTED = "CheckpointsPersisted"
PHASE_CONDITIONS = (COND_RUNNING, COND_SUSPENDED, COND_SUCCEEDED, COND_FAILED)

TERMINAL_PHASES = ("Succeeded", "Failed")

# KubeRay failure reasons that another attempt cannot fix: KubeRay itself does not retry them
# (`checkBackoffLimitAndUpdateStatusIfNeeded`), nor does a Kubernetes Job past its activeDeadlineSeconds.
TERMINAL_RAY_REASONS = frozenset({"DeadlineExceeded", "ValidationFailed"})

# How the operator learns that `kuberl run` refused its input inside the pod: Ray's job supervisor words a
# failed entrypoint "Job entrypoint command failed with exit code N, last available logs (truncated to
# 20,000 chars):\n<log tail>" (or "…exit code N. No logs available."; ray/dashboard/modules/job/
# job_supervisor.py) and KubeRay copies that into the RayJob's status.message (reason AppFailed). The
# RayJob carries no other trace of the exit status: its submitter's exit says only that the job failed.
RAY_ENTRYPOINT_EXIT = re.compile(r"Job entrypoint command failed with exit code (-?\d+)")
# `kuberl run`'s status for bad input (kuberl.cli.EXIT_USAGE, docs/reliability.md): another attempt runs
# the same spec in the same image and is refused the same way, so it is never retried.
EXIT_INVALID_SPEC = 2
MAX_TRAINER_ERROR = 2000

INT64_MAX = 2**63 - 1
# Longest checkpoint URI mirrored (S3 keys are at most 1024 bytes; the bucket and scheme add < 100).
MAX_CHECKPOINT_URI = 1200

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
class Event:
    """A Kubernetes Event to post: `reason` is a CamelCase verb or cause (RayJobCreated, AttemptFailed),
    as kubelet and the Job controller write them, never the phase name."""

    type: Literal["Normal", "Warning"]
    reason: str
    message: str


@dataclass(frozen=True)
class Transition:
    """The derived status and what the reconciler must do about it."""

    status: RLTrainingJobStatus
    retry: bool = False  # create the children of status.attempt (a fresh RayJob resuming with `auto`)
    previous_phase: str | None = None
    events: tuple[Event, ...] = ()
    stop_ray_job: bool = False  # the job-wide deadline passed while the RayJob still runs: delete it

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
            # The cause of the current state explains every phase condition, true or false (not the
            # phase name: "Running=False reason=Succeeded" read as a state, not a cause).
            reason=reason,
            message=message if on else "",
            now=now,
            generation=generation,
        )
    update: dict[str, Any] = {
        "phase": phase,
        "conditions": conditions,
        "message": message,
        "observed_generation": generation,
    }
    if phase in TERMINAL_PHASES and status.completion_time is None:
        update["completion_time"] = rfc3339(now)
    return status.model_copy(update=update)


PROGRESS_KEYS: dict[str, tuple[str, ...]] = {
    "iteration": ("iteration", "trainingIteration", "training_iteration"),
    "timesteps": ("timesteps", "timestepsTotal", "timesteps_total", "envStepsTotal", "env_steps_total"),
    "episode_return_mean": ("episodeReturnMean", "episode_return_mean"),
    "last_checkpoint": ("lastCheckpoint", "last_checkpoint"),
}


def _count(value: Any) -> int | None:
    """A counter from JSON: an int (or integral float) in [0, int64 max], else None."""
    if isinstance(value, bool):
        return None
    if isinstance(value, float):
        if not math.isfinite(value) or not value.is_integer():
            return None
        value = int(value)
    if isinstance(value, int) and 0 <= value <= INT64_MAX:
        return value
    return None


def _finite(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    try:
        out = float(value)
    except OverflowError:  # an int beyond float range
        return None
    return out if math.isfinite(out) else None


def _uri(value: Any) -> str | None:
    if not isinstance(value, str) or not value or len(value) > MAX_CHECKPOINT_URI:
        return None
    return value if value.isprintable() else None


_VALIDATORS = {
    "iteration": _count,
    "timesteps": _count,
    "episode_return_mean": _finite,
    "last_checkpoint": _uri,
}


def mirrored_progress(progress: Mapping[str, Any] | None) -> dict[str, Any]:
    """The trainer's /status values that may enter the job status. The reply is tenant-written: a value
    that is not finite, outside int64, of the wrong type or too long is dropped (the status keeps its last
    value) rather than raising on every pass or producing a patch the API server refuses."""
    out: dict[str, Any] = {}
    for field, names in PROGRESS_KEYS.items():
        for name in names:
            value = _VALIDATORS[field]((progress or {}).get(name))
            if value is not None:
                out[field] = value
                break
    return out


# The trainer's /status serves custom metric names of at most 64 characters, at most
# spec.metrics.maxCustomMetrics of them (kuberl.metrics); the reply is tenant-written and the status lives
# in etcd, so the status keeps at most the default 32 whatever the job sets.
MAX_CUSTOM_METRICS = 32
MAX_CUSTOM_NAME = 64


def mirrored_custom_metrics(progress: Mapping[str, Any] | None) -> dict[str, CustomMetricStats] | None:
    """/status's `customMetrics` ({name: {mean, min, max}}) as the status holds it: the first
    MAX_CUSTOM_METRICS valid names; a name that is not a short printable string, or a statistic that is
    not a finite number, is dropped. None when the reply has no such object."""
    raw = (progress or {}).get("customMetrics")
    if not isinstance(raw, Mapping):
        return None
    out: dict[str, CustomMetricStats] = {}
    for name, stats in raw.items():
        if len(out) >= MAX_CUSTOM_METRICS:
            break
        if not (isinstance(name, str) and 0 < len(name) <= MAX_CUSTOM_NAME and name.isprintable()):
            continue
        if not isinstance(stats, Mapping):
            continue
        values = {k: v for k in ("mean", "min", "max") if (v := _finite(stats.get(k))) is not None}
        if values:
            out[name] = CustomMetricStats(**values)
    return out


def _progress(
    status: RLTrainingJobStatus, progress: Mapping[str, Any] | None, job: RLTrainingJob
) -> RLTrainingJobStatus:
    """Mirror the trainer's /status; missing or invalid keys (or an unreachable trainer) keep the last values.
    customMetrics is the exception: a reply that has the object replaces the whole map, so a name the
    trainer no longer reports leaves the status (the write sends a null for it, reconcile._write_status);
    with spec.metrics.customMetricsInStatus turned off the map goes."""
    update = mirrored_progress(progress)
    if job.spec.metrics.custom_metrics_in_status:
        custom = mirrored_custom_metrics(progress)
        if custom is not None:
            update["custom_metrics"] = custom or None  # none left: no customMetrics key at all
    elif status.custom_metrics is not None:
        update["custom_metrics"] = None
    return status.model_copy(update=update) if update else status


def parse_rfc3339(value: str | None) -> datetime | None:
    if not value:
        return None
    try:
        parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


def deadline_remaining(job: RLTrainingJob, *, now: datetime) -> float | None:
    """Seconds left of `activeDeadlineSeconds`, counted from the job's start (status.startTime) across all
    attempts, as for a Kubernetes Job; None when the job has no deadline."""
    limit = job.spec.active_deadline_seconds
    if limit is None:
        return None
    started = parse_rfc3339(job.status.start_time if job.status else None) or now
    return limit - (now - started).total_seconds()


def checkpoint_condition(job: RLTrainingJob) -> tuple[Literal["True", "False"], str, str]:
    """(status, reason, message) of the CheckpointsPersisted condition."""
    uri = job.spec.checkpoint.uri
    if uri is not None and uri.startswith("s3://"):
        return "True", "CheckpointURISet", f"retries and resume after suspend continue from {uri}"
    if uri is None:
        return (
            "False",
            "NoCheckpointURI",
            "spec.checkpoint.uri is not set: a retry or a resume after suspend starts training from "
            "scratch (set an s3:// URI to continue from the newest checkpoint)",
        )
    return (
        "False",
        "LocalCheckpointURI",
        f"spec.checkpoint.uri {uri!r} is a local path: a retry or a resume runs in a new pod and finds it "
        "only on a volume shared across pods (use an s3:// URI)",
    )


def _spec_conditions(
    conditions: list[Condition], job: RLTrainingJob, *, generation: int | None, now: datetime
) -> list[Condition]:
    """Valid=True and CheckpointsPersisted: the conditions a spec that parsed decides on its own."""
    conditions = set_condition(
        conditions, COND_VALID, "True", reason="SpecValid", message="", now=now, generation=generation
    )
    persisted, reason, message = checkpoint_condition(job)
    return set_condition(
        conditions,
        COND_CHECKPOINTS_PERSISTED,
        persisted,
        reason=reason,
        message=message,
        now=now,
        generation=generation,
    )


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
    conditions = _spec_conditions([], job, generation=generation, now=now)
    base = base.model_copy(update={"conditions": conditions})
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
    return current.model_copy(update={"conditions": conditions, "observed_generation": generation})


def valid_again(
    status: RLTrainingJobStatus, job: RLTrainingJob, *, generation: int | None, now: datetime
) -> RLTrainingJobStatus:
    """The conditions that depend on the spec alone, re-evaluated for a generation that parsed: Valid=True
    (again, after an invalid edit was fixed) and CheckpointsPersisted, each with this generation as its
    observedGeneration (lastTransitionTime moves only if its status flips)."""
    conditions = _spec_conditions(list(status.conditions), job, generation=generation, now=now)
    return status.model_copy(update={"conditions": conditions, "observed_generation": generation})


def _problems(error: SpecError) -> str:
    problems = error.problems or [("spec", "invalid")]
    return "; ".join(f"{path or 'spec'}: {reason}" for path, reason in problems)


def trainer_refusal(ray_message: str) -> str | None:
    """The trainer's own error when the RayJob failed because `kuberl run` exited 2 (bad input), else None.

    The error is what the CLI printed last: its `error: …` line and the indented lines under it (a
    SpecError lists one problem per line), joined with "; "; with no such line in the log tail, a
    generic text (the exit status alone decides)."""
    found = RAY_ENTRYPOINT_EXIT.match(ray_message)
    if found is None or int(found.group(1)) != EXIT_INVALID_SPEC:
        return None
    tail = ray_message[found.end() :].split("\n")[1:]  # the first line is Ray's own
    starts = [i for i, line in enumerate(tail) if line.startswith("error:")]
    if not starts:
        return f"kuberl run exited {EXIT_INVALID_SPEC} (invalid input); see the RayJob's logs"
    lines = [tail[starts[-1]].removeprefix("error:").strip()]
    for line in tail[starts[-1] + 1 :]:
        if not line[:1].isspace() or not line.strip():
            break
        lines.append(line.strip())
    return "; ".join(lines)[:MAX_TRAINER_ERROR]


def derive_status(
    job: RLTrainingJob,
    rayjob_status: Mapping[str, Any] | None,
    progress: Mapping[str, Any] | None,
    *,
    now: datetime,
) -> Transition:
    """The next status of a valid job whose children exist (or are being created), and the Events to post.

    `rayjob_status` is the RayJob's `.status` (None: not created or not observed yet);
    `progress` the trainer's `/status` JSON (None: unreachable).
    """
    current = job.status or RLTrainingJobStatus()
    previous = current.phase
    generation = _generation(job)
    status = _progress(current, progress, job).model_copy(update={"observed_generation": generation})
    if previous in TERMINAL_PHASES:
        # Terminal phases are final; only late progress (e.g. the last checkpoint) is still mirrored.
        return Transition(status=status, previous_phase=previous)

    def enter(
        phase: Phase,
        reason: str,
        message: str,
        *events: Event,
        base: RLTrainingJobStatus = status,
        retry: bool = False,
        stop: bool = False,
    ) -> Transition:
        """`base` moved to `phase` (its phase conditions and timestamps: _with_phase). Events are posted
        only when the phase changes (or a retry starts), not on every pass."""
        moved = _with_phase(base, phase, reason=reason, message=message, now=now, generation=generation)
        posted = events if (phase != previous or retry) else ()
        return Transition(
            status=moved, retry=retry, previous_phase=previous, events=posted, stop_ray_job=stop
        )

    ray = rayjob_status or {}
    deployment = str(ray.get("jobDeploymentStatus") or "")
    job_status = str(ray.get("jobStatus") or "")
    outcome = outcome_of(deployment, job_status) if rayjob_status is not None else "pending"
    ray_message = str(ray.get("message") or "")[:500]
    remaining = deadline_remaining(job, now=now)
    deadline_passed = remaining is not None and remaining <= 0
    limit = job.spec.active_deadline_seconds

    if outcome == "succeeded":
        return enter(
            "Succeeded",
            "RayJobSucceeded",
            "training finished",
            Event("Normal", "TrainingSucceeded", f"RayJob {status.ray_job_name} succeeded"),
        )
    if outcome == "failed":
        reason = str(ray.get("reason") or "")  # KubeRay: AppFailed, DeadlineExceeded, …
        if deployment in TERMINAL_RAY_REASONS and not reason:
            reason = deployment  # jobDeploymentStatus ValidationFailed
        detail = f"RayJob {status.ray_job_name} failed ({deployment or '-'}/{job_status or '-'})" + (
            f": {ray_message}" if ray_message else ""
        )
        if reason == "DeadlineExceeded" or deadline_passed:
            message = f"{detail}; activeDeadlineSeconds {limit} exceeded: not retried"
            return enter("Failed", "DeadlineExceeded", message, Event("Warning", "DeadlineExceeded", message))
        refused = trainer_refusal(str(ray.get("message") or ""))
        if refused is not None:
            return _refused_in_pod(enter, status, refused, now=now, generation=generation)
        if reason in TERMINAL_RAY_REASONS:
            message = f"{detail}; {reason} is not retried"
            return enter("Failed", reason, message, Event("Warning", reason, message))
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
            persisted, _, why = checkpoint_condition(job)
            if persisted == "True":
                how, event = (
                    "resumes from the newest checkpoint",
                    Event(
                        "Normal",
                        "RetryingFromCheckpoint",
                        f"attempt {attempt}/{job.spec.backoff_limit}: RayJob {names.ray_job} resumes "
                        "from the newest checkpoint",
                    ),
                )
            else:
                how, event = (
                    "starts from scratch",
                    Event(
                        "Warning",
                        "RetryingFromScratch",
                        f"attempt {attempt}/{job.spec.backoff_limit}: RayJob {names.ray_job}; {why}",
                    ),
                )
            message = f"{detail}; retry {attempt}/{job.spec.backoff_limit} {how}"
            return enter(
                "Pending",
                "Retrying",
                message,
                Event("Warning", "AttemptFailed", detail),
                event,
                base=retried,
                retry=True,
            )
        message = f"{detail}; backoffLimit {job.spec.backoff_limit} reached"
        final = _reason(reason, "BackoffLimitExceeded")
        return enter("Failed", final, message, Event("Warning", "BackoffLimitExceeded", message))
    if deadline_passed:
        # KubeRay enforces the remaining deadline on the RayJob; this catches what it does not see (time
        # spent suspended, or a RayJob that never reports): stop the cluster and fail for good.
        message = f"activeDeadlineSeconds {limit} exceeded since {status.start_time}: stopped, not retried"
        return enter(
            "Failed",
            "DeadlineExceeded",
            message,
            Event("Warning", "DeadlineExceeded", message),
            stop=True,
        )
    if job.spec.suspend:
        return enter(
            "Suspended",
            "Suspended",
            "suspended; checkpoints kept",
            Event("Normal", "Suspended", f"RayJob {status.ray_job_name} suspended; checkpoints kept"),
        )
    if outcome == "running":
        return enter(
            "Running",
            "RayJobRunning",
            "training",
            Event("Normal", "TrainingStarted", f"RayJob {status.ray_job_name} is running"),
        )
    # pending, or suspended in KubeRay while the spec says run: the reconciler is resuming it.
    if previous == "Suspended":
        message = "resuming from the newest checkpoint"
        return enter(
            "Pending",
            "Resuming",
            message,
            Event("Normal", "Resumed", f"RayJob {status.ray_job_name} resumed; {message}"),
        )
    message = (
        "resuming from the newest checkpoint"
        if outcome == "suspended"
        else f"waiting for the Ray cluster ({deployment or 'not started'})"
    )
    return enter("Pending", "Starting", message)


def _refused_in_pod(
    enter: Callable[..., Transition],
    status: RLTrainingJobStatus,
    refused: str,
    *,
    now: datetime,
    generation: int | None,
) -> Transition:
    """`kuberl run` exited 2 in the pod: what only the trainer can check (a custom algorithm's class, a
    resumed checkpoint that does not fit) is invalid. Failed at once, Valid=False with the trainer's
    message, as for a spec the operator refuses itself; no retry, no resume loop."""
    message = f"the trainer refused the job (exit {EXIT_INVALID_SPEC}): {refused}; not retried"
    conditions = set_condition(
        list(status.conditions),
        COND_VALID,
        "False",
        reason="InvalidSpec",
        message=refused,
        now=now,
        generation=generation,
    )
    base = status.model_copy(update={"conditions": conditions})
    return enter("Failed", "InvalidSpec", message, Event("Warning", "InvalidSpec", message), base=base)


def _reason(value: str, fallback: str) -> str:
    """KubeRay's reason when it is a valid metav1 reason (CamelCase), else ours."""
    return value if value.replace("_", "").isalnum() and value[:1].isalpha() else fallback
