"""The operator as a real `python -m kuberl_operator` process against the Kubernetes emulator.

KubeRay is emulated by patching the RayJob's status; the trainer by a JSON `/status` on loopback.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.request
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from tests.fixtures.k8s import Emulator, start_emulator

pytestmark = pytest.mark.integration
NS = "rl"
REPO = Path(__file__).resolve().parents[2]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class Operator:
    def __init__(self, emulator: Emulator, workdir: Path, extra_env: dict[str, str] | None = None) -> None:
        self.emulator, self.workdir = emulator, workdir
        self.extra_env = extra_env or {}
        self.proc: subprocess.Popen[bytes] | None = None
        self.metrics_port = _free_port()
        self.runs = 0

    def start(self) -> None:
        self.runs += 1
        health = _free_port()
        env = {
            **os.environ,
            "KUBECONFIG": str(self.emulator.kubeconfig),
            "KUBERL_SYNC_INTERVAL": "0.5",
            "KUBERL_OPERATOR_METRICS_PORT": str(self.metrics_port),
            "KUBERL_LIVENESS": f"http://127.0.0.1:{health}/healthz",
            "KUBERL_NAMESPACES": "all",
            # The emulator has no Lease semantics (no resourceVersion): one replica, no election here.
            "KUBERL_LEADER_ELECTION": "false",
            # This checkout's code, not whatever kuberl is installed (an editable install of another tree).
            "PYTHONPATH": os.pathsep.join(str(REPO / d) for d in ("operator", "trainer_image", ".")),
            **self.extra_env,
        }
        log = (self.workdir / f"operator-{self.runs}.log").open("wb")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "kuberl_operator"], env=env, stdout=log, stderr=log
        )
        wait_for(lambda: _http_ok(f"http://127.0.0.1:{health}/healthz"), what="operator liveness", timeout=30)

    def kill(self) -> None:
        assert self.proc is not None
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(10)

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.kill()

    def log(self) -> str:
        return "".join(
            p.read_text(errors="replace")[-4000:] for p in sorted(self.workdir.glob("operator-*.log"))
        )


def _http_ok(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=1) as resp:
            return bool(resp.status == 200)
    except OSError:
        return False


def wait_for(predicate: Callable[[], Any], *, what: str, timeout: float = 20) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.2)
    raise AssertionError(f"timed out waiting for {what}")


class TrainerStatus:
    """A trainer-like JSON /status on 127.0.0.1."""

    def __init__(self) -> None:
        self.payload: dict[str, Any] = {}
        owner = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                body = json.dumps(owner.payload).encode()
                self.send_response(200 if self.path == "/status" else 404)
                self.send_header("Content-Type", "application/json")
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *_: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"


@pytest.fixture(scope="module")
def trainer() -> Iterator[TrainerStatus]:
    """One trainer-like /status for every job: the operator is told where it is by its own setting
    (KUBERL_STATUS_URL_TEMPLATE, an operator-level value), never by anything in a job."""
    status = TrainerStatus()
    yield status
    status.server.shutdown()


@pytest.fixture(scope="module")
def cluster(
    tmp_path_factory: pytest.TempPathFactory, trainer: TrainerStatus
) -> Iterator[tuple[Emulator, Operator]]:
    workdir = tmp_path_factory.mktemp("operator")
    emulator = start_emulator(workdir)
    operator = Operator(emulator, workdir, extra_env={"KUBERL_STATUS_URL_TEMPLATE": trainer.url})
    operator.start()
    try:
        yield emulator, operator
    finally:
        operator.stop()
        emulator.stop()
        print(operator.log())


def job(name: str, **spec: Any) -> dict[str, Any]:
    return {
        "apiVersion": "kuberl.io/v1alpha1",
        "kind": "RLTrainingJob",
        "metadata": {"name": name, "namespace": NS, "annotations": spec.pop("annotations", {})},
        "spec": {"algorithm": "PPO", "env": "CartPole-v1", "backoffLimit": 0, **spec},
    }


def status(em: Emulator, name: str) -> dict[str, Any]:
    obj = em.get("rltrainingjobs", NS, name) or {}
    return dict(obj.get("status") or {})


def phase_is(em: Emulator, name: str, phase: str) -> Callable[[], bool]:
    return lambda: status(em, name).get("phase") == phase


def ray_status(em: Emulator, name: str, deployment: str, job_status: str, **extra: Any) -> None:
    em.patch(
        "rayjobs",
        NS,
        name,
        {"status": {"jobDeploymentStatus": deployment, "jobStatus": job_status, **extra}},
        status=True,
    )


def test_apply_status_progress_and_success(
    cluster: tuple[Emulator, Operator], trainer: TrainerStatus
) -> None:
    em, _ = cluster
    created = em.create("rltrainingjobs", NS, job("ok"))
    rayjob = wait_for(lambda: em.get("rayjobs", NS, "ok-r0"), what="RayJob ok-r0")
    config_map = wait_for(lambda: em.get("configmaps", NS, "ok-r0-spec"), what="ConfigMap")
    for child in (rayjob, config_map):
        ref = child["metadata"]["ownerReferences"][0]
        assert ref["uid"] == created["metadata"]["uid"]
        assert ref["controller"] is True
        assert child["metadata"]["labels"]["kuberl.io/job"] == "ok"
    assert status(em, "ok")["rayJobName"] == "ok-r0"
    wait_for(phase_is(em, "ok", "Pending"), what="Pending")

    trainer.payload = {
        "iteration": 12,
        "timesteps": 48000,
        "episodeReturnMean": 187.5,
        "lastCheckpoint": "s3://b/c/10",
    }
    ray_status(em, "ok-r0", "Running", "RUNNING", rayClusterName="ok-r0-abcde")
    wait_for(phase_is(em, "ok", "Running"), what="Running")
    wait_for(lambda: status(em, "ok").get("iteration") == 12, what="progress mirrored")
    st = status(em, "ok")
    assert (st["timesteps"], st["episodeReturnMean"], st["lastCheckpoint"]) == (48000, 187.5, "s3://b/c/10")
    running = next(c for c in st["conditions"] if c["type"] == "Running")
    assert running["status"] == "True"

    ray_status(em, "ok-r0", "Complete", "SUCCEEDED")
    wait_for(phase_is(em, "ok", "Succeeded"), what="Succeeded")
    assert status(em, "ok")["completionTime"]
    reasons = {
        e.get("reason") for e in em.list("events", NS) if e.get("involvedObject", {}).get("name") == "ok"
    }
    assert {"RayJobCreated", "TrainingStarted", "TrainingSucceeded"} <= reasons


def test_invalid_spec_fails_with_field_path(cluster: tuple[Emulator, Operator]) -> None:
    em, _ = cluster
    em.create("rltrainingjobs", NS, job("bad", resources={"envRunners": -1}))
    wait_for(phase_is(em, "bad", "Failed"), what="Failed")
    valid = next(c for c in status(em, "bad")["conditions"] if c["type"] == "Valid")
    assert valid["status"] == "False"
    assert valid["message"].startswith("spec.resources.envRunners:")
    time.sleep(1.0)
    assert em.get("rayjobs", NS, "bad-r0") is None
    assert em.get("configmaps", NS, "bad-r0-spec") is None


def test_invalid_edit_keeps_the_running_rayjob(cluster: tuple[Emulator, Operator]) -> None:
    em, _ = cluster
    em.create("rltrainingjobs", NS, job("edit", resume="never"))
    wait_for(lambda: em.get("rayjobs", NS, "edit-r0"), what="RayJob")
    ray_status(em, "edit-r0", "Running", "RUNNING")
    wait_for(phase_is(em, "edit", "Running"), what="Running")
    em.patch("rltrainingjobs", NS, "edit", {"spec": {"resources": {"envRunners": -1}}})

    def invalid() -> bool:
        valid = [c for c in status(em, "edit").get("conditions", []) if c["type"] == "Valid"]
        return bool(valid) and valid[0]["status"] == "False"

    wait_for(invalid, what="Valid=False")
    valid = next(c for c in status(em, "edit")["conditions"] if c["type"] == "Valid")
    assert valid["reason"] == "InvalidSpecEdit"
    assert valid["message"].startswith("spec.resources.envRunners:")
    assert status(em, "edit")["phase"] == "Running"
    # The status loop still follows the RayJob, which runs the last valid spec.
    ray_status(em, "edit-r0", "Complete", "SUCCEEDED")
    wait_for(phase_is(em, "edit", "Succeeded"), what="Succeeded despite the invalid edit")
    assert em.get("rayjobs", NS, "edit-r0") is not None


def test_suspend_and_resume(cluster: tuple[Emulator, Operator]) -> None:
    em, _ = cluster
    em.create("rltrainingjobs", NS, job("sus", resume="never", activeDeadlineSeconds=3600))
    wait_for(lambda: em.get("rayjobs", NS, "sus-r0"), what="RayJob")
    ray_status(em, "sus-r0", "Running", "RUNNING")
    wait_for(phase_is(em, "sus", "Running"), what="Running")
    em.patch("rltrainingjobs", NS, "sus", {"spec": {"suspend": True}})
    wait_for(
        lambda: (em.get("rayjobs", NS, "sus-r0") or {})["spec"].get("suspend") is True,
        what="RayJob suspended",
    )
    wait_for(phase_is(em, "sus", "Suspended"), what="Suspended")
    ray_status(em, "sus-r0", "Suspended", "")
    assert em.get("rayjobs", NS, "sus-r0")["spec"]["activeDeadlineSeconds"] == 3600
    # Resume with a field removed from the spec: the RayJob's spec is replaced, not merged, so the
    # field is gone from the RayJob too (a merge patch would have kept the old deadline).
    em.patch("rltrainingjobs", NS, "sus", {"spec": {"suspend": False, "activeDeadlineSeconds": None}})
    wait_for(lambda: (em.get("rayjobs", NS, "sus-r0") or {})["spec"].get("suspend") is False, what="resumed")
    resumed = em.get("rayjobs", NS, "sus-r0")["spec"]
    assert resumed["entrypoint"].endswith("--set resume=auto")
    assert "activeDeadlineSeconds" not in resumed
    wait_for(phase_is(em, "sus", "Pending"), what="Pending while resuming")
    ray_status(em, "sus-r0", "Running", "RUNNING")
    wait_for(phase_is(em, "sus", "Running"), what="Running again")


def test_failed_rayjob_retried_up_to_backoff_limit(cluster: tuple[Emulator, Operator]) -> None:
    em, op = cluster
    em.create("rltrainingjobs", NS, job("flaky", backoffLimit=2, resume="never"))
    first = wait_for(lambda: em.get("rayjobs", NS, "flaky-r0"), what="r0")
    assert first["spec"]["entrypoint"].endswith("resume=never")
    for attempt in (0, 1):
        ray_status(em, f"flaky-r{attempt}", "Failed", "FAILED", reason="AppFailed")
        nxt = wait_for(
            lambda a=attempt: em.get("rayjobs", NS, f"flaky-r{a + 1}"), what=f"attempt {attempt + 1}"
        )
        assert nxt["spec"]["entrypoint"].endswith("--set resume=auto")
        wait_for(lambda a=attempt: status(em, "flaky").get("attempt") == a + 1, what="attempt in status")
    ray_status(em, "flaky-r2", "Failed", "FAILED", reason="AppFailed")
    wait_for(phase_is(em, "flaky", "Failed"), what="Failed after backoffLimit")
    time.sleep(1.0)
    assert em.get("rayjobs", NS, "flaky-r3") is None
    metrics = urllib.request.urlopen(f"http://127.0.0.1:{op.metrics_port}/metrics", timeout=5).read().decode()
    assert f'kuberl_operator_retries_total{{namespace="{NS}"}} 2.0' in metrics
    assert 'kuberl_operator_reconciles_total{handler="create",result="success"}' in metrics
    assert 'kuberl_operator_jobs{namespace="rl",phase="Failed"}' in metrics


def test_delete_removes_children(cluster: tuple[Emulator, Operator]) -> None:
    em, _ = cluster
    em.create("rltrainingjobs", NS, job("gone", backoffLimit=1))
    wait_for(lambda: em.get("rayjobs", NS, "gone-r0"), what="r0")
    ray_status(em, "gone-r0", "Failed", "FAILED")
    wait_for(lambda: em.get("rayjobs", NS, "gone-r1"), what="r1")
    wait_for(
        lambda: (
            "kuberl.io/finalizer"
            in (em.get("rltrainingjobs", NS, "gone") or {})["metadata"].get("finalizers", [])
        ),
        what="finalizer",
    )
    em.delete("rltrainingjobs", NS, "gone")
    wait_for(lambda: em.get("rltrainingjobs", NS, "gone") is None, what="job deleted")
    for name in ("gone-r0", "gone-r1"):
        assert em.get("rayjobs", NS, name) is None
        assert em.get("configmaps", NS, f"{name}-spec") is None


def test_restart_mid_reconcile_keeps_one_rayjob(cluster: tuple[Emulator, Operator]) -> None:
    em, op = cluster
    op.kill()
    names = [f"rs{i}" for i in range(6)]
    for name in names:
        em.create("rltrainingjobs", NS, job(name))
    # Names saved, children not created: what a kill between the two steps leaves behind.
    em.patch(
        "rltrainingjobs",
        NS,
        "rs0",
        {
            "status": {
                "rayJobName": "rs0-r0",
                "configMapName": "rs0-r0-spec",
                "attempt": 0,
                "phase": "Pending",
            }
        },
        status=True,
    )
    op.start()
    time.sleep(0.4)
    op.kill()  # killed again while the creates are in flight
    op.start()
    for name in names:
        wait_for(lambda n=name: em.get("rayjobs", NS, f"{n}-r0"), what=f"RayJob of {name}")
    time.sleep(1.5)
    rayjobs = [r["metadata"]["name"] for r in em.list("rayjobs", NS)]
    for name in names:
        assert [r for r in rayjobs if r.startswith(f"{name}-r")] == [f"{name}-r0"]
