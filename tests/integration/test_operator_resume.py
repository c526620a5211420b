"""Resume through the operator (issue #12 §6): an edit of a started job takes effect on the operator's
next attempt, and an edit that no resumed run could take is refused in the job's status.

The operator under test runs as in test_operator.py (the chart's ServiceAccount and RBAC, the real
kube-apiserver); the pod's part is played by running each attempt's RayJob entrypoint
(`kuberl run /etc/kuberl/job.yaml --set resume=…`) with `kuberl run` here, on the job file from that
attempt's ConfigMap, against an S3 checkpoint store (moto), as the pod would.
"""

from __future__ import annotations

import json
import os
import shlex
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from kuberl_operator.labels import SPEC_FILE, SPEC_MOUNT_DIR
from tests.integration.test_operator import (  # noqa: F401  (cluster and trainer: the module's fixtures)
    Cluster,
    cluster,
    job,
    ray_status,
    rayjob,
    status,
    trainer,
    wait_for,
)

pytestmark = [pytest.mark.integration, pytest.mark.kube]
ROOT = Path(__file__).resolve().parents[2]
NAME = "resume-edit"


def run_attempt(c: Cluster, attempt: int, workdir: Path) -> subprocess.CompletedProcess[str]:
    """What attempt `attempt`'s pod runs: its RayJob's entrypoint, on its ConfigMap's job file."""
    config_map = wait_for(
        lambda: c.api.get("configmaps", c.ns, f"{NAME}-r{attempt}-spec"), what=f"ConfigMap r{attempt}"
    )
    ray_job = wait_for(lambda: rayjob(c, f"{NAME}-r{attempt}"), what=f"RayJob r{attempt}")
    mount = workdir / f"mount-r{attempt}"
    mount.mkdir()
    (mount / SPEC_FILE).write_text(config_map["data"][SPEC_FILE])
    argv = shlex.split(ray_job["spec"]["entrypoint"].replace(SPEC_MOUNT_DIR, str(mount)))
    assert argv[0] == "kuberl", argv
    env = {k: v for k, v in os.environ.items() if k != "KUBERNETES_SERVICE_HOST"}
    env["PYTHONPATH"] = os.pathsep.join((str(ROOT / "trainer_image"), str(ROOT / "operator"), str(ROOT)))
    return subprocess.run(
        [sys.executable, "-m", "kuberl.cli", *argv[1:]],
        cwd=workdir,
        capture_output=True,
        text=True,
        timeout=300,
        env=env,
    )


def results(workdir: Path) -> list[dict[str, Any]]:
    lines = (workdir / "runs" / NAME / "result.json").read_text().splitlines()
    return [json.loads(line) for line in lines]


def params(workdir: Path) -> dict[str, Any]:
    return dict(json.loads((workdir / "runs" / NAME / "params.json").read_text()))


def valid(c: Cluster) -> dict[str, Any]:
    return next((x for x in status(c, NAME).get("conditions", []) if x["type"] == "Valid"), {})


def fail(c: Cluster, attempt: int) -> None:
    """Play KubeRay: the attempt's job failed (a pod lost), so the operator retries."""
    ray_status(c, f"{NAME}-r{attempt}", "Running", "RUNNING")
    wait_for(lambda: status(c, NAME).get("phase") == "Running", what=f"r{attempt} Running")
    ray_status(c, f"{NAME}-r{attempt}", "Failed", "FAILED", reason="AppFailed")


def test_edits_take_effect_on_retry_and_fixed_fields_are_refused(
    cluster: Cluster,  # noqa: F811
    s3_bucket: str,
    tmp_path: Path,
) -> None:
    c = cluster
    small = {"train_batch_size": 128, "minibatch_size": 64, "num_epochs": 1, "lr": 0.001}
    c.api.create(
        "rltrainingjobs",
        c.ns,
        job(
            NAME,
            backoffLimit=2,
            resume="auto",
            config=small,
            stop={"iterations": 2},
            resources={"envRunners": 0, "envsPerRunner": 2},
            checkpoint={"uri": s3_bucket, "everyIterations": 1},
        ),
    )
    first = run_attempt(c, 0, tmp_path)
    assert first.returncode == 0, first.stderr[-3000:]
    assert [r["learner"]["default_policy"]["lr"] for r in results(tmp_path)] == [0.001, 0.001]

    # Hyperparameters and stop criteria: pending on the running attempt, in effect on the retry.
    c.api.patch("rltrainingjobs", c.ns, NAME, {"spec": {"config": {"lr": 0.0005}, "stop": {"iterations": 3}}})
    wait_for(
        lambda: any(x["type"] == "SpecChangePending" for x in status(c, NAME).get("conditions", [])),
        what="SpecChangePending",
    )
    fail(c, 0)
    second = run_attempt(c, 1, tmp_path)
    assert second.returncode == 0, second.stderr[-3000:]
    assert f"resumed from {s3_bucket}" in second.stdout, second.stdout[-2000:]
    rows = results(tmp_path)
    assert [r["training_iteration"] for r in rows] == [1, 2, 3]  # continued from iteration 2
    assert rows[-1]["learner"]["default_policy"]["lr"] == 0.0005  # the edit is what trained
    assert params(tmp_path)["spec"]["config"]["lr"] == 0.0005  # and what params.json records

    # The networks shape the checkpoint: the operator refuses the edit at once, in the job's status,
    # and the next attempt runs the last accepted spec (and resumes) instead of failing in the pod.
    c.api.patch(
        "rltrainingjobs",
        c.ns,
        NAME,
        {"spec": {"config": {"model": {"fcnetHiddens": [8]}}, "stop": {"iterations": 4}}},
    )
    refusal = wait_for(lambda: valid(c) if valid(c).get("status") == "False" else None, what="Valid=False")
    assert refusal["reason"] == "InvalidSpecEdit", refusal
    assert refusal["message"].startswith("spec.config.model: cannot change once the job has started"), refusal
    assert "[8]" in refusal["message"]
    fail(c, 1)
    third = run_attempt(c, 2, tmp_path)
    assert third.returncode == 0, third.stderr[-3000:]
    assert "resumed from" in third.stdout
    assert params(tmp_path)["spec"]["config"].get("model", {}).get("fcnetHiddens") != [8]
    assert [r["training_iteration"] for r in results(tmp_path)] == [1, 2, 3]  # stop.iterations=4 refused too

    # Set back, the spec is valid again.
    c.api.patch("rltrainingjobs", c.ns, NAME, {"spec": {"config": {"model": None}}})
    wait_for(lambda: valid(c).get("status") == "True", what="Valid=True again")
