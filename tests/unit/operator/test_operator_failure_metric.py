"""kuberl_operator_job_failures_total counts each job once when it fails, by reason, so the chart's
alerts are edge-triggered and can tell a typo (InvalidSpec) from a training failure."""

from __future__ import annotations

import asyncio
import copy
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
    "spec": {"algorithm": "PPO", "env": "CartPole-v1", "backoffLimit": 0},
}


def _failures(ctx: reconcile.Context, reason: str) -> float:
    value: float = ctx.metrics.failures.labels(namespace="ns", reason=reason)._value.get()
    return value


def _with_status(body: dict[str, Any], api: FakeApi) -> dict[str, Any]:
    out = copy.deepcopy(body)
    out["status"] = api.statuses[-1]
    return out


def test_a_failed_training_is_counted_once_by_reason() -> None:
    api, events = FakeApi(), []
    ctx = make_context(api, events)
    asyncio.run(reconcile.create(ctx, BODY))
    api.objects[("RayJob", "ns", "job-r0")]["status"] = {
        "jobDeploymentStatus": "Failed",
        "jobStatus": "FAILED",
    }
    asyncio.run(reconcile.sync(ctx, _with_status(BODY, api)))
    assert api.statuses[-1]["phase"] == "Failed"
    assert _failures(ctx, "BackoffLimitExceeded") == 1
    for _ in range(3):  # later passes over the failed job count nothing
        asyncio.run(reconcile.sync(ctx, _with_status(BODY, api)))
    assert _failures(ctx, "BackoffLimitExceeded") == 1
    assert _failures(ctx, "InvalidSpec") == 0


def test_an_invalid_spec_is_counted_as_invalid_spec() -> None:
    api, events = FakeApi(), []
    ctx = make_context(api, events)
    bad = copy.deepcopy(BODY)
    bad["spec"]["cluster"] = {"cpuWorkers": {"cpu": "1Gi"}}
    with pytest.raises(kopf.PermanentError):
        asyncio.run(reconcile.create(ctx, bad))
    assert _failures(ctx, "InvalidSpec") == 1
    with pytest.raises(kopf.PermanentError):  # kopf retrying the same event: no second count
        asyncio.run(reconcile.create(ctx, _with_status(bad, api)))
    assert _failures(ctx, "InvalidSpec") == 1
