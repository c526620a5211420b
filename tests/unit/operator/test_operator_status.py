"""The status transition table: RayJob states (+ suspend, retries) -> phase and conditions."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from kuberl.spec import RLTrainingJobStatus, SpecError, parse_job
from kuberl_operator.status import (
    derive_status,
    initial_status,
    invalid_status,
    mirrored_progress,
    outcome_of,
    set_condition,
)

T0 = datetime(2026, 1, 1, tzinfo=UTC)


def _job(
    *,
    suspend: bool = False,
    backoff: int = 2,
    status: RLTrainingJobStatus | None = None,
    **spec: Any,
) -> Any:
    job = parse_job(
        {
            "metadata": {"name": "j", "namespace": "ns", "generation": 4},
            "spec": {
                "algorithm": "PPO",
                "env": "CartPole-v1",
                "suspend": suspend,
                "backoffLimit": backoff,
                "checkpoint": {"uri": "s3://bucket/j"},
                **spec,
            },
        }
    )
    job.status = status or initial_status(job, now=T0)
    return job


# (jobDeploymentStatus, jobStatus, suspend, attempt, backoffLimit) -> (phase, retry, reason)
TABLE = [
    (None, None, False, 0, 2, "Pending", False, "Starting"),
    ("", "", False, 0, 2, "Pending", False, "Starting"),
    ("New", "", False, 0, 2, "Pending", False, "Starting"),
    ("Initializing", "", False, 0, 2, "Pending", False, "Starting"),
    ("Waiting", "", False, 0, 2, "Pending", False, "Starting"),
    ("Retrying", "", False, 0, 2, "Pending", False, "Starting"),
    ("Running", "PENDING", False, 0, 2, "Pending", False, "Starting"),
    ("Running", "RUNNING", False, 0, 2, "Running", False, "RayJobRunning"),
    ("Running", "SUCCEEDED", False, 0, 2, "Succeeded", False, "RayJobSucceeded"),
    ("Complete", "SUCCEEDED", False, 0, 2, "Succeeded", False, "RayJobSucceeded"),
    ("Complete", "FAILED", False, 0, 2, "Pending", True, "Retrying"),
    ("Complete", "STOPPED", False, 1, 2, "Pending", True, "Retrying"),
    ("Failed", "FAILED", False, 0, 2, "Pending", True, "Retrying"),
    ("Failed", "", False, 1, 2, "Pending", True, "Retrying"),
    ("Failed", "FAILED", False, 2, 2, "Failed", False, "BackoffLimitExceeded"),
    ("Failed", "FAILED", False, 0, 0, "Failed", False, "BackoffLimitExceeded"),
    # KubeRay refused the RayJob itself: another attempt with the same spec cannot fare better.
    ("ValidationFailed", "", False, 0, 0, "Failed", False, "ValidationFailed"),
    ("ValidationFailed", "", False, 0, 2, "Failed", False, "ValidationFailed"),
    ("Running", "RUNNING", True, 0, 2, "Suspended", False, "Suspended"),
    ("Suspending", "", True, 0, 2, "Suspended", False, "Suspended"),
    ("Suspended", "", True, 0, 2, "Suspended", False, "Suspended"),
    ("Suspended", "", False, 0, 2, "Pending", False, "Starting"),  # resuming
    ("SomethingNew", "", False, 0, 2, "Pending", False, "Starting"),  # unknown states never fail a job
]


@pytest.mark.parametrize(
    ("deployment", "job_status", "suspend", "attempt", "backoff", "phase", "retry", "reason"), TABLE
)
def test_transition_table(
    deployment: str | None,
    job_status: str | None,
    suspend: bool,
    attempt: int,
    backoff: int,
    phase: str,
    retry: bool,
    reason: str,
) -> None:
    job = _job(suspend=suspend, backoff=backoff)
    job.status = job.status.model_copy(update={"attempt": attempt, "ray_job_name": f"j-r{attempt}"})
    ray = None if deployment is None else {"jobDeploymentStatus": deployment, "jobStatus": job_status}
    t = derive_status(job, ray, None, now=T0 + timedelta(seconds=5))
    assert t.status.phase == phase
    assert t.retry is retry
    conditions = {c.type: c for c in t.status.conditions}
    if phase in ("Running", "Suspended", "Succeeded", "Failed"):
        assert conditions[phase].status == "True"
        assert conditions[phase].reason == reason
    assert t.status.observed_generation == 4
    assert sum(conditions[c].status == "True" for c in ("Running", "Suspended", "Succeeded", "Failed")) <= 1
    if retry:
        assert t.status.attempt == attempt + 1
        assert t.status.ray_job_name == f"j-r{attempt + 1}"
        assert "resumes from the newest checkpoint" in (t.status.message or "")
    else:
        assert t.status.attempt == attempt
    if phase in ("Succeeded", "Failed"):
        assert t.status.completion_time is not None


def test_terminal_phases_are_final() -> None:
    job = _job()
    done = derive_status(
        job, {"jobDeploymentStatus": "Complete", "jobStatus": "SUCCEEDED"}, None, now=T0
    ).status
    job.status = done
    again = derive_status(
        job, {"jobDeploymentStatus": "Failed", "jobStatus": "FAILED"}, {"iteration": 9}, now=T0
    )
    assert again.status.phase == "Succeeded"
    assert not again.retry
    assert not again.phase_changed
    assert again.status.iteration == 9


def test_last_transition_time_moves_only_on_status_change() -> None:
    conds = set_condition([], "Running", "False", reason="A", message="", now=T0, generation=1)
    same = set_condition(
        conds, "Running", "False", reason="B", message="m", now=T0 + timedelta(hours=1), generation=2
    )
    assert same[0].last_transition_time == conds[0].last_transition_time
    assert same[0].reason == "B"
    flipped = set_condition(
        same, "Running", "True", reason="C", message="", now=T0 + timedelta(hours=2), generation=2
    )
    assert flipped[0].last_transition_time == "2026-01-01T02:00:00Z"


def test_progress_is_mirrored_and_kept_when_unreachable() -> None:
    job = _job()
    running = {"jobDeploymentStatus": "Running", "jobStatus": "RUNNING"}
    progress = {
        "iteration": 7,
        "timesteps": 28000,
        "episodeReturnMean": 123.5,
        "lastCheckpoint": "s3://b/c/7",
    }
    s = derive_status(job, running, progress, now=T0).status
    assert (s.iteration, s.timesteps, s.episode_return_mean, s.last_checkpoint) == (
        7,
        28000,
        123.5,
        "s3://b/c/7",
    )
    job.status = s
    s2 = derive_status(job, running, None, now=T0).status
    assert s2.iteration == 7
    s3 = derive_status(job, running, {"iteration": "garbage", "episode_return_mean": 1}, now=T0).status
    assert s3.iteration == 7
    assert s3.episode_return_mean == 1.0


def test_outcome_unknown_is_pending() -> None:
    assert outcome_of("Whatever", "") == "pending"


def test_invalid_status_names_the_field() -> None:
    err = SpecError([("spec.resources.envRunners", "must be >= 0"), ("spec.env", "bad")])
    s = invalid_status(None, err, generation=3, now=T0)
    assert s.phase == "Failed"
    valid = next(c for c in s.conditions if c.type == "Valid")
    assert valid.status == "False"
    assert "spec.resources.envRunners: must be >= 0" in valid.message
    assert "spec.env" in valid.message
    assert s.observed_generation == 3


def test_initial_status_saves_names_first() -> None:
    job = _job()
    s = initial_status(job, now=T0)
    assert (s.ray_job_name, s.config_map_name, s.attempt, s.phase) == ("j-r0", "j-r0-spec", 0, "Pending")
    assert s.observed_generation == 4


def _reasons(t: Any) -> list[str]:
    return [e.reason for e in t.events]


def test_events_name_the_cause_not_the_phase() -> None:
    job = _job()
    running = derive_status(job, {"jobDeploymentStatus": "Running", "jobStatus": "RUNNING"}, None, now=T0)
    assert _reasons(running) == ["TrainingStarted"]
    job.status = running.status
    # No new Event while the phase stays the same.
    again = derive_status(job, {"jobDeploymentStatus": "Running", "jobStatus": "RUNNING"}, None, now=T0)
    assert again.events == ()
    failed = derive_status(
        job, {"jobDeploymentStatus": "Failed", "jobStatus": "FAILED", "reason": "AppFailed"}, None, now=T0
    )
    assert _reasons(failed) == ["AttemptFailed", "RetryingFromCheckpoint"]
    assert [e.type for e in failed.events] == ["Warning", "Normal"]
    job.status = failed.status
    done = derive_status(job, {"jobDeploymentStatus": "Complete", "jobStatus": "SUCCEEDED"}, None, now=T0)
    assert _reasons(done) == ["TrainingSucceeded"]
    # Inactive phase conditions carry the cause too, never a phase name (review L4).
    conds = {c.type: c for c in done.status.conditions}
    assert (conds["Running"].status, conds["Running"].reason) == ("False", "RayJobSucceeded")
    suspended = derive_status(
        _job(suspend=True), {"jobDeploymentStatus": "Suspended", "jobStatus": ""}, None, now=T0
    )
    assert _reasons(suspended) == ["Suspended"]
    job = _job(status=suspended.status)
    resumed = derive_status(job, {"jobDeploymentStatus": "Suspended", "jobStatus": ""}, None, now=T0)
    assert (resumed.status.phase, _reasons(resumed)) == ("Pending", ["Resumed"])


def test_retry_without_a_checkpoint_uri_warns_that_it_starts_from_scratch() -> None:
    job = _job(checkpoint={})
    cond = next(c for c in job.status.conditions if c.type == "CheckpointsPersisted")
    assert (cond.status, cond.reason) == ("False", "NoCheckpointURI")
    assert "spec.checkpoint.uri" in cond.message
    t = derive_status(job, {"jobDeploymentStatus": "Failed", "jobStatus": "FAILED"}, None, now=T0)
    assert t.retry
    assert _reasons(t) == ["AttemptFailed", "RetryingFromScratch"]
    assert t.events[1].type == "Warning"
    assert "starts from scratch" in (t.status.message or "")
    local = _job(checkpoint={"uri": "/tmp/ckpt"})
    cond = next(c for c in local.status.conditions if c.type == "CheckpointsPersisted")
    assert (cond.status, cond.reason) == ("False", "LocalCheckpointURI")
    s3 = next(c for c in _job().status.conditions if c.type == "CheckpointsPersisted")
    assert (s3.status, s3.reason) == ("True", "CheckpointURISet")


def test_deadline_exceeded_is_terminal_and_job_wide() -> None:
    job = _job(activeDeadlineSeconds=600)
    # KubeRay's own DeadlineExceeded: not retried although backoffLimit allows two more attempts.
    t = derive_status(
        job,
        {"jobDeploymentStatus": "Failed", "jobStatus": "", "reason": "DeadlineExceeded"},
        None,
        now=T0 + timedelta(seconds=60),
    )
    assert (t.status.phase, t.retry) == ("Failed", False)
    assert next(c for c in t.status.conditions if c.type == "Failed").reason == "DeadlineExceeded"
    assert _reasons(t) == ["DeadlineExceeded"]
    # Any failure after the job-wide deadline (counted from startTime, across attempts) is final too.
    t = derive_status(
        job, {"jobDeploymentStatus": "Failed", "jobStatus": "FAILED"}, None, now=T0 + timedelta(seconds=601)
    )
    assert (t.status.phase, t.retry) == ("Failed", False)
    # Still running past the deadline: the operator stops the RayJob and fails the job.
    t = derive_status(
        job,
        {"jobDeploymentStatus": "Running", "jobStatus": "RUNNING"},
        None,
        now=T0 + timedelta(seconds=601),
    )
    assert (t.status.phase, t.stop_ray_job) == ("Failed", True)
    # Before the deadline a failure is retried as usual.
    t = derive_status(
        job, {"jobDeploymentStatus": "Failed", "jobStatus": "FAILED"}, None, now=T0 + timedelta(seconds=599)
    )
    assert t.retry


@pytest.mark.parametrize(
    ("progress", "expected"),
    [
        ({"iteration": 1e999}, {}),
        ({"iteration": float("nan"), "timesteps": float("inf")}, {}),
        ({"iteration": 2**63}, {}),
        ({"iteration": -1}, {}),
        ({"iteration": True}, {}),
        ({"iteration": 3.0, "timesteps": 2**63 - 1}, {"iteration": 3, "timesteps": 2**63 - 1}),
        ({"iteration": 3.5}, {}),
        ({"episodeReturnMean": float("nan")}, {}),
        ({"episodeReturnMean": -float("inf")}, {}),
        ({"episodeReturnMean": 10**400}, {}),
        ({"episodeReturnMean": "12"}, {}),
        ({"episodeReturnMean": -12}, {"episode_return_mean": -12.0}),
        ({"lastCheckpoint": "s3://b/" + "x" * 5_000_000}, {}),
        ({"lastCheckpoint": {"nested": 1}}, {}),
        ({"lastCheckpoint": "s3://b/\x00evil"}, {}),
        ({"lastCheckpoint": "s3://b/c/7"}, {"last_checkpoint": "s3://b/c/7"}),
        # The first valid spelling wins; an invalid one falls through to the next.
        ({"iteration": "x", "trainingIteration": 4}, {"iteration": 4}),
    ],
)
def test_mirrored_values_are_validated(progress: dict[str, Any], expected: dict[str, Any]) -> None:
    assert mirrored_progress(progress) == expected


def test_hostile_progress_never_raises_and_keeps_the_status_encodable() -> None:
    import json

    job = _job()
    running = {"jobDeploymentStatus": "Running", "jobStatus": "RUNNING"}
    hostile = {"iteration": 1e999, "timesteps": float("nan"), "episodeReturnMean": float("inf")}
    s = derive_status(job, running, hostile, now=T0).status
    # allow_nan=False: the API server refuses NaN/Infinity, so they must never reach a patch.
    json.dumps(s.to_wire(), allow_nan=False)
    assert s.iteration is None


def test_custom_metrics_are_mirrored_only_when_asked_and_capped() -> None:
    import json

    running = {"jobDeploymentStatus": "Running", "jobStatus": "RUNNING"}
    custom: dict[Any, Any] = {
        "pole_angle": {"mean": 0.5, "min": -1, "max": 2.0},
        "half": {"mean": 1.0, "min": float("nan"), "max": "x"},  # only the finite numbers stay
        "x" * 65: {"mean": 1.0},  # longer than a Prometheus label value kuberl emits
        "bad\nname": {"mean": 1.0},
        "not_stats": 3,
        **{f"m{i:02d}": {"mean": float(i)} for i in range(40)},
    }
    progress = {"iteration": 3, "customMetrics": custom}
    plain = derive_status(_job(), running, progress, now=T0).status
    assert plain.custom_metrics is None
    assert "customMetrics" not in plain.to_wire()

    s = derive_status(_job(metrics={"customMetricsInStatus": True}), running, progress, now=T0).status
    wire = json.loads(json.dumps(s.to_wire(), allow_nan=False))["customMetrics"]
    assert wire["pole_angle"] == {"mean": 0.5, "min": -1.0, "max": 2.0}
    assert wire["half"] == {"mean": 1.0}
    assert len(wire) == 32  # the first 32 valid names
    assert list(wire)[:3] == ["pole_angle", "half", "m00"]
    assert not {"x" * 65, "bad\nname", "not_stats", "m30"} & set(wire)
    # An unreachable trainer or a reply without the object keeps the last values.
    job = _job(metrics={"customMetricsInStatus": True}, status=s)
    assert derive_status(job, running, {"iteration": 4}, now=T0).status.custom_metrics == s.custom_metrics
    assert derive_status(job, running, None, now=T0).status.custom_metrics == s.custom_metrics


def test_custom_metric_names_the_trainer_no_longer_reports_leave_the_status() -> None:
    running = {"jobDeploymentStatus": "Running", "jobStatus": "RUNNING"}
    both = {"customMetrics": {"a": {"mean": 1.0}, "b": {"mean": 2.0}}}
    s = derive_status(_job(metrics={"customMetricsInStatus": True}), running, both, now=T0).status
    job = _job(metrics={"customMetricsInStatus": True}, status=s)
    only_b = derive_status(job, running, {"customMetrics": {"b": {"mean": 3.0}}}, now=T0).status
    assert only_b.to_wire()["customMetrics"] == {"b": {"mean": 3.0}}
    # None left, or mirroring turned off by an edit: no customMetrics key at all.
    assert "customMetrics" not in derive_status(job, running, {"customMetrics": {}}, now=T0).status.to_wire()
    off = _job(status=s)
    assert "customMetrics" not in derive_status(off, running, both, now=T0).status.to_wire()


def _ray_failed(code: int, log_tail: str) -> dict[str, Any]:
    """A RayJob as KubeRay leaves it when the entrypoint exits `code`: Ray's job supervisor's message."""
    message = (
        f"Job entrypoint command failed with exit code {code}, last available logs (truncated to 20,000 "
        "chars):\n" + log_tail
        if log_tail
        else f"Job entrypoint command failed with exit code {code}. No logs available."
    )
    return {"jobDeploymentStatus": "Failed", "jobStatus": "FAILED", "reason": "AppFailed", "message": message}


def test_a_job_the_trainer_refuses_fails_at_once_with_its_message() -> None:
    """`kuberl run` exits 2 on bad input: no retry however many backoffLimit allows, Valid=False."""
    tail = (
        "INFO some log line\n"
        "error: /etc/kuberl/job.yaml: invalid RLTrainingJob\n"
        "  spec.algorithm: module 'my_pkg.algos' has no attribute 'Nope'\n"
        "  spec.config.lr: must be > 0\n"
    )
    job = _job(backoff=3)
    t = derive_status(job, _ray_failed(2, tail), None, now=T0)
    assert not t.retry
    assert (t.status.phase, t.status.attempt) == ("Failed", 0)
    refused = (
        "/etc/kuberl/job.yaml: invalid RLTrainingJob; spec.algorithm: module 'my_pkg.algos' has no "
        "attribute 'Nope'; spec.config.lr: must be > 0"
    )
    conds = {c.type: c for c in t.status.conditions}
    assert (conds["Failed"].status, conds["Failed"].reason) == ("True", "InvalidSpec")
    assert (conds["Valid"].status, conds["Valid"].reason, conds["Valid"].message) == (
        "False",
        "InvalidSpec",
        refused,
    )
    assert refused in (t.status.message or "")
    assert "not retried" in (t.status.message or "")
    assert _reasons(t) == ["InvalidSpec"]
    # Without logs the exit status alone decides.
    bare = derive_status(job, _ray_failed(2, ""), None, now=T0)
    assert (bare.status.phase, bare.retry) == ("Failed", False)
    assert "exited 2" in next(c.message for c in bare.status.conditions if c.type == "Valid")


@pytest.mark.parametrize("code", [1, 65, 75, 137, -9, 20, 12])
def test_other_exit_statuses_keep_retrying_from_the_checkpoint(code: int) -> None:
    t = derive_status(_job(), _ray_failed(code, "error: something\n"), None, now=T0)
    assert t.retry
    assert (t.status.phase, t.status.attempt) == ("Pending", 1)
    assert _reasons(t) == ["AttemptFailed", "RetryingFromCheckpoint"]
