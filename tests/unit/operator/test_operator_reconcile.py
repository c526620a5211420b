"""reconcile.py against a fake API: idempotent create, retries, suspend, delete, spec-edit policy."""

from __future__ import annotations

import asyncio
import copy
import subprocess
import sys
from pathlib import Path
from typing import Any

import kopf
import pytest

from kuberl_operator import reconcile

sys.path.insert(0, str(Path(__file__).parent))
from fakes import FakeApi, make_context

BODY: dict[str, Any] = {
    "apiVersion": "kuberl.io/v1alpha1",
    "kind": "RLTrainingJob",
    "metadata": {"name": "job", "namespace": "ns", "uid": "u-1", "generation": 1},
    "spec": {"algorithm": "PPO", "env": "CartPole-v1", "backoffLimit": 1},
}


def _with_status(body: dict[str, Any], api: FakeApi) -> dict[str, Any]:
    out = copy.deepcopy(body)
    out["status"] = api.statuses[-1]
    return out


def test_create_is_idempotent_and_saves_names_first() -> None:
    api, events = FakeApi(), []
    ctx = make_context(api, events)
    asyncio.run(reconcile.create(ctx, BODY))
    assert api.statuses[0]["rayJobName"] == "job-r0"
    # A restarted operator runs create again with the saved status: no second set of children.
    asyncio.run(reconcile.create(ctx, _with_status(BODY, api)))
    assert sorted(k for k in api.objects) == [
        ("ConfigMap", "ns", "job-r0-spec"),
        ("NetworkPolicy", "ns", "job-r0"),
        ("RayJob", "ns", "job-r0"),
    ]
    owner = api.objects[("RayJob", "ns", "job-r0")]["metadata"]["ownerReferences"][0]
    assert owner["uid"] == "u-1"


def test_retry_then_give_up() -> None:
    api, events = FakeApi(), []
    ctx = make_context(api, events)
    asyncio.run(reconcile.create(ctx, BODY))
    api.objects[("RayJob", "ns", "job-r0")]["status"] = {
        "jobDeploymentStatus": "Failed",
        "jobStatus": "FAILED",
    }
    asyncio.run(reconcile.sync(ctx, _with_status(BODY, api)))
    assert api.statuses[-1]["attempt"] == 1
    new = api.objects[("RayJob", "ns", "job-r1")]
    assert new["spec"]["entrypoint"].endswith("--set resume=auto")
    assert ctx.metrics.retries.labels(namespace="ns")._value.get() == 1
    new["status"] = {"jobDeploymentStatus": "Failed", "jobStatus": "FAILED"}
    asyncio.run(reconcile.sync(ctx, _with_status(BODY, api)))
    assert api.statuses[-1]["phase"] == "Failed"
    assert ("RayJob", "ns", "job-r2") not in api.objects
    assert [e[1] for e in events][-1] == "BackoffLimitExceeded"
    # Reasons say what happened (Kubernetes style), never the phase name.
    assert [e[1] for e in events] == [
        "RayJobCreated",
        "NoCheckpointURI",
        "AttemptFailed",
        "RetryingFromScratch",
        "BackoffLimitExceeded",
    ]


def test_sync_recreates_children_whose_names_were_saved() -> None:
    api, events = FakeApi(), []
    ctx = make_context(api, events)
    asyncio.run(reconcile.create(ctx, BODY))
    api.objects.clear()  # as if the operator died between saving names and creating
    asyncio.run(reconcile.sync(ctx, _with_status(BODY, api)))
    assert ("RayJob", "ns", "job-r0") in api.objects


def test_suspend_resume_and_spec_edit_policy() -> None:
    api, events = FakeApi(), []
    ctx = make_context(api, events)
    asyncio.run(reconcile.create(ctx, BODY))
    # Every spec edit bumps metadata.generation (the API server does it; the operator parses each
    # generation once).
    edited = _with_status(BODY, api)
    edited["metadata"]["generation"] = 2
    edited["spec"]["stop"] = {"iterations": 5}
    asyncio.run(reconcile.update(ctx, edited, [("add", ("spec", "stop"), None, {"iterations": 5})]))
    pending = next(c for c in api.statuses[-1]["conditions"] if c["type"] == "SpecChangePending")
    assert pending["status"] == "True"
    assert "stop" in pending["message"]

    suspended = _with_status(edited, api)
    suspended["metadata"]["generation"] = 3
    suspended["spec"]["suspend"] = True
    asyncio.run(reconcile.update(ctx, suspended, [("change", ("spec", "suspend"), False, True)]))
    assert api.objects[("RayJob", "ns", "job-r0")]["spec"]["suspend"] is True
    assert api.statuses[-1]["phase"] == "Suspended"

    resumed = _with_status(suspended, api)
    resumed["metadata"]["generation"] = 4
    resumed["spec"]["suspend"] = False
    asyncio.run(reconcile.update(ctx, resumed, [("change", ("spec", "suspend"), True, False)]))
    ray = api.objects[("RayJob", "ns", "job-r0")]["spec"]
    assert ray["suspend"] is False
    assert ray["entrypoint"].endswith("--set resume=auto")
    assert not [c for c in api.statuses[-1]["conditions"] if c["type"] == "SpecChangePending"]
    # observedGeneration follows every edit (kstatus: Argo CD, Flux); so do the conditions'.
    assert api.statuses[-1]["observedGeneration"] == 4
    assert {c["observedGeneration"] for c in api.statuses[-1]["conditions"] if c["type"] == "Valid"} == {4}
    assert [e[1] for e in events][-2:] == ["Suspended", "Resumed"]


def _valid(status: dict[str, Any]) -> dict[str, Any]:
    return next(c for c in status["conditions"] if c["type"] == "Valid")


def test_invalid_edit_of_a_running_job_keeps_it_running_with_the_last_valid_spec() -> None:
    api, events = FakeApi(), []
    ctx = make_context(api, events)
    asyncio.run(reconcile.create(ctx, BODY))
    ray_job = api.objects[("RayJob", "ns", "job-r0")]
    ray_job["status"] = {"jobDeploymentStatus": "Running", "jobStatus": "RUNNING"}
    asyncio.run(reconcile.sync(ctx, _with_status(BODY, api)))
    assert api.statuses[-1]["phase"] == "Running"
    spec_before = copy.deepcopy(ray_job["spec"])

    bad = _with_status(BODY, api)
    bad["spec"]["resources"] = {"envRunners": -1}
    bad["metadata"]["generation"] = 2
    asyncio.run(reconcile.update(ctx, bad, [("add", ("spec", "resources"), None, {"envRunners": -1})]))
    status = api.statuses[-1]
    assert status["phase"] == "Running"  # not Failed: nothing already trained is thrown away
    valid = _valid(status)
    assert (valid["status"], valid["reason"]) == ("False", "InvalidSpecEdit")
    assert valid["message"].startswith("spec.resources.envRunners:")
    assert events[-1][:2] == ("Warning", "InvalidSpecEdit")
    assert ray_job["spec"] == spec_before
    assert not [c for c in api.calls if c[0] in ("delete", "patch")]

    # The status loop keeps following the attempt (it runs the spec in its ConfigMap), retries included.
    ray_job["status"] = {"jobDeploymentStatus": "Failed", "jobStatus": "FAILED"}
    bad = {**bad, "status": api.statuses[-1]}
    asyncio.run(reconcile.sync(ctx, bad))
    assert api.statuses[-1]["attempt"] == 1
    retried = api.objects[("RayJob", "ns", "job-r1")]
    assert "envRunners: -1" not in api.objects[("ConfigMap", "ns", "job-r1-spec")]["data"]["job.yaml"]
    assert _valid(api.statuses[-1])["status"] == "False"
    retried["status"] = {"jobDeploymentStatus": "Complete", "jobStatus": "SUCCEEDED"}

    fixed = _with_status(BODY, api)
    fixed["metadata"]["generation"] = 3
    asyncio.run(reconcile.update(ctx, fixed, [("remove", ("spec", "resources"), {"envRunners": -1}, None)]))
    assert _valid(api.statuses[-1])["status"] == "True"
    assert api.statuses[-1]["phase"] == "Succeeded"


def test_invalid_spec_before_any_child_fails_the_job() -> None:
    api, events = FakeApi(), []
    ctx = make_context(api, events)
    bad = copy.deepcopy(BODY)
    bad["spec"]["resources"] = {"envRunners": -1}
    with pytest.raises(kopf.PermanentError):  # kopf stops retrying a spec that cannot work
        asyncio.run(reconcile.create(ctx, bad))
    assert api.statuses[-1]["phase"] == "Failed"
    assert _valid(api.statuses[-1])["reason"] == "InvalidSpec"
    assert not api.objects


def test_delete_removes_every_attempt() -> None:
    api, events = FakeApi(), []
    ctx = make_context(api, events)
    body = copy.deepcopy(BODY)
    body["status"] = {"attempt": 2, "rayJobName": "job-r2"}
    asyncio.run(reconcile.delete(ctx, body))
    deleted = {c[3] for c in api.calls if c[0] == "delete"}
    assert deleted == {f"job-r{i}" for i in range(3)} | {f"job-r{i}-spec" for i in range(3)}


def test_operator_never_imports_torch_or_ray() -> None:
    code = (
        "import sys, kuberl_operator.handlers, kuberl_operator.__main__, kuberl_operator.builders;"
        "bad = [m for m in ('torch', 'ray') if m in sys.modules]; assert not bad, bad"
    )
    subprocess.run([sys.executable, "-c", code], check=True, timeout=60)


def test_each_attempt_gets_what_is_left_of_the_job_wide_deadline() -> None:
    from datetime import UTC, datetime, timedelta

    clock = [datetime(2026, 1, 1, tzinfo=UTC)]
    api, events = FakeApi(), []
    ctx = make_context(api, events, now=lambda: clock[0])
    body = copy.deepcopy(BODY)
    body["spec"]["activeDeadlineSeconds"] = 3600
    body["spec"]["backoffLimit"] = 3
    asyncio.run(reconcile.create(ctx, body))
    assert api.objects[("RayJob", "ns", "job-r0")]["spec"]["activeDeadlineSeconds"] == 3600
    clock[0] += timedelta(seconds=1000)
    api.objects[("RayJob", "ns", "job-r0")]["status"] = {
        "jobDeploymentStatus": "Failed",
        "jobStatus": "FAILED",
    }
    asyncio.run(reconcile.sync(ctx, body))
    assert api.objects[("RayJob", "ns", "job-r1")]["spec"]["activeDeadlineSeconds"] == 2600
    # KubeRay fails attempt 1 with DeadlineExceeded: final, although backoffLimit allows two more.
    api.objects[("RayJob", "ns", "job-r1")]["status"] = {
        "jobDeploymentStatus": "Failed",
        "jobStatus": "",
        "reason": "DeadlineExceeded",
    }
    asyncio.run(reconcile.sync(ctx, body))
    assert api.statuses[-1]["phase"] == "Failed"
    assert ("RayJob", "ns", "job-r2") not in api.objects
    assert events[-1][:2] == ("Warning", "DeadlineExceeded")


def test_a_running_job_past_its_deadline_is_stopped() -> None:
    from datetime import UTC, datetime, timedelta

    clock = [datetime(2026, 1, 1, tzinfo=UTC)]
    api, events = FakeApi(), []
    ctx = make_context(api, events, now=lambda: clock[0])
    body = copy.deepcopy(BODY)
    body["spec"]["activeDeadlineSeconds"] = 60
    asyncio.run(reconcile.create(ctx, body))
    api.objects[("RayJob", "ns", "job-r0")]["status"] = {
        "jobDeploymentStatus": "Running",
        "jobStatus": "RUNNING",
    }
    clock[0] += timedelta(seconds=61)
    asyncio.run(reconcile.sync(ctx, body))
    assert api.statuses[-1]["phase"] == "Failed"
    assert ("delete", "RayJob", "ns", "job-r0") in api.calls


def test_events_of_an_earlier_attempts_rayjob_are_ignored_and_a_stale_body_is_not_trusted() -> None:
    api, events = FakeApi(), []
    ctx = make_context(api, events)
    asyncio.run(reconcile.create(ctx, BODY))
    api.objects[("RayJob", "ns", "job-r0")]["status"] = {
        "jobDeploymentStatus": "Failed",
        "jobStatus": "FAILED",
    }
    asyncio.run(reconcile.sync(ctx, BODY))
    assert api.statuses[-1]["attempt"] == 1
    writes = len(api.statuses)
    # BODY still carries no status (the watch has not delivered the operator's writes yet), and r0
    # reports again: the operator knows what it wrote, so no second retry and no write.
    asyncio.run(reconcile.sync(ctx, BODY, rayjob=api.objects[("RayJob", "ns", "job-r0")]))
    assert len(api.statuses) == writes
    assert ("RayJob", "ns", "job-r2") not in api.objects


def test_a_deleted_rayjob_of_a_started_attempt_is_recreated_resuming() -> None:
    body = copy.deepcopy(BODY)
    body["spec"]["resume"] = "never"
    api, events = FakeApi(), []
    ctx = make_context(api, events)
    asyncio.run(reconcile.create(ctx, body))
    assert api.objects[("RayJob", "ns", "job-r0")]["spec"]["entrypoint"].endswith("resume=never")
    api.objects[("RayJob", "ns", "job-r0")]["status"] = {
        "jobDeploymentStatus": "Running",
        "jobStatus": "RUNNING",
    }
    asyncio.run(reconcile.sync(ctx, body))
    del api.objects[("RayJob", "ns", "job-r0")]  # someone deleted it
    asyncio.run(reconcile.sync(ctx, body))
    assert api.objects[("RayJob", "ns", "job-r0")]["spec"]["entrypoint"].endswith("resume=auto")


def test_status_merge_patch_nulls_what_vanished() -> None:
    """A merge patch keeps keys it does not name: the status write names vanished ones with null."""
    from kuberl_operator.k8s import merge_patch

    before = {"phase": "Running", "customMetrics": {"a": {"mean": 1.0}, "b": {"mean": 2.0}}, "x": [1, 2]}
    after = {"phase": "Running", "customMetrics": {"b": {"mean": 3.0}}, "x": [3]}
    assert merge_patch(before, after) == {
        "phase": "Running",
        "customMetrics": {"a": None, "b": {"mean": 3.0}},
        "x": [3],
    }
    assert merge_patch(before, {"phase": "Failed"}) == {"phase": "Failed", "customMetrics": None, "x": None}
    assert merge_patch(None, after) == after
