"""The operator's control loop against the real API server (tests/fixtures/kube.py), each operator a
`python -m kuberl_operator` process authenticated as the chart's ServiceAccount (`helm install` of
charts/kuberl), so RBAC, the status subresource, generation and resourceVersion rules are the server's:

- two replicas: exactly one reconciles (the Lease), and the other takes over once the leader is killed;
  a clean stop hands the Lease over at once;
- observedGeneration current after every edit, Events with causes as reasons, a retry resuming from the
  checkpoint, suspend/resume, KubeRay's DeadlineExceeded final;
- hostile trainer /status replies (NaN, 1e999, oversize) do not stop the job's status from being written;
- no checkpoint URI is warned about; finished jobs cost no passes.

KubeRay is played by writing each RayJob's status through its status subresource.
"""

from __future__ import annotations

import contextlib
import itertools
import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.request
import uuid
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.fixtures.kube import ControlPlane

pytestmark = [pytest.mark.integration, pytest.mark.kube]
REPO = Path(__file__).resolve().parents[2]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_for(predicate: Callable[[], Any], *, what: str, timeout: float = 30) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.2)
    raise AssertionError(f"timed out waiting for {what}")


def job(name: str, **spec: Any) -> dict[str, Any]:
    return {
        "apiVersion": "kuberl.io/v1alpha1",
        "kind": "RLTrainingJob",
        "metadata": {"name": name},
        "spec": {"algorithm": "PPO", "env": "CartPole-v1", "backoffLimit": 0, **spec},
    }


class Operator:
    """`python -m kuberl_operator` with a kubeconfig, as a user runs it; this checkout's code."""

    def __init__(self, kubeconfig: Path, workdir: Path, extra_env: dict[str, str]) -> None:
        self.kubeconfig, self.workdir, self.extra_env = kubeconfig, workdir, extra_env
        self.proc: subprocess.Popen[bytes] | None = None
        self.metrics_port = _free_port()
        workdir.mkdir(parents=True, exist_ok=True)

    def start(self) -> None:
        health = _free_port()
        env = {
            **os.environ,
            "KUBECONFIG": str(self.kubeconfig),
            "KUBERL_SYNC_INTERVAL": "0.5",
            "KUBERL_OPERATOR_METRICS_PORT": str(self.metrics_port),
            "KUBERL_LIVENESS": f"http://127.0.0.1:{health}/healthz",
            "PYTHONPATH": os.pathsep.join(str(REPO / d) for d in ("operator", "trainer_image", ".")),
            **self.extra_env,
        }
        log = (self.workdir / "operator.log").open("ab")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "kuberl_operator"], env=env, stdout=log, stderr=log
        )

        def healthy() -> bool:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{health}/healthz", timeout=1) as resp:
                    return bool(resp.status == 200)
            except OSError:
                return False

        wait_for(healthy, what="operator health", timeout=60)

    def kill(self) -> None:
        assert self.proc is not None
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(10)

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                self.kill()

    def log(self) -> str:
        return (self.workdir / "operator.log").read_text(errors="replace")[-4000:]


def install_operator_rbac(kube: ControlPlane, *, release: str, values: tuple[str, ...]) -> Path:
    """`helm install` the chart into a namespace of its own (its Deployment's pods never run: there is
    no kubelet) and return a kubeconfig for the chart's ServiceAccount."""
    ns = kube.create_namespace(release)
    kube.helm("install", release, str(REPO / "charts" / "kuberl"), "--namespace", ns, *values)
    return Path(kube.service_account_kubeconfig(ns, f"{release}-kuberl"))


LEASE_S = 6  # a short Lease so the failover test is quick; the default is 15 s


def _lease(kube: ControlPlane, ns: str, name: str) -> dict[str, Any] | None:
    code, obj = kube.client.request("GET", f"/apis/coordination.k8s.io/v1/namespaces/{ns}/leases/{name}")
    return obj if code == 200 else None


def _metric(op: Operator, name: str) -> float | None:
    text = urllib.request.urlopen(f"http://127.0.0.1:{op.metrics_port}/metrics", timeout=5).read().decode()
    for line in text.splitlines():
        if line.startswith(name + " ") or line.startswith(name + "{"):
            return float(line.rsplit(" ", 1)[1])
    return None


def _events(kube: ControlPlane, ns: str, name: str) -> list[str]:
    return [
        str(e.get("reason"))
        for e in kube.client.list("events", ns)
        if (e.get("involvedObject") or {}).get("name") == name
    ]


def _status(kube: ControlPlane, ns: str, name: str) -> dict[str, Any]:
    return dict((kube.client.get("rltrainingjobs", ns, name) or {}).get("status") or {})


def _ray(kube: ControlPlane, ns: str, name: str, deployment: str, job_status: str, **extra: Any) -> None:
    body = {"status": {"jobDeploymentStatus": deployment, "jobStatus": job_status, **extra}}
    kube.client.patch("rayjobs", ns, name, body, status=True)


class _Replicas:
    """The chart installed for `replicaCount: 2` watching one namespace (its own release, so
    cluster-scoped names never clash); replicas started with the env its Deployment sets."""

    _releases = itertools.count(1)

    def __init__(
        self, kube: ControlPlane, workdir: Path, watch: str, extra: dict[str, str] | None = None
    ) -> None:
        self.release = f"ha{next(self._releases)}{uuid.uuid4().hex[:4]}"
        values = ("--set", "replicaCount=2", "--set", f"watch.namespaces={{{watch}}}")
        self.kubeconfig = install_operator_rbac(kube, release=self.release, values=values)
        # The ServiceAccount's kubeconfig has the release namespace as its context's namespace.
        self.release_ns = yaml.safe_load(self.kubeconfig.read_text())["contexts"][0]["context"]["namespace"]
        self.lease = f"{self.release}-kuberl"
        self.kube, self.workdir, self.watch, self.extra = kube, workdir, watch, extra or {}
        self.ops: list[Operator] = []

    def start(self, identity: str) -> Operator:
        op = Operator(
            self.kubeconfig,
            self.workdir / identity,
            {
                "POD_NAME": identity,
                "KUBERL_LEASE_NAME": self.lease,
                "KUBERL_LEASE_DURATION": str(LEASE_S),
                "KUBERL_NAMESPACES": self.watch,
                **self.extra,
            },
        )
        op.start()
        self.ops.append(op)
        return op

    def holder(self) -> str | None:
        lease = _lease(self.kube, self.release_ns, self.lease) or {}
        return (lease.get("spec") or {}).get("holderIdentity")

    def stop(self) -> None:
        for op in self.ops:
            op.stop()
            print(op.log())


@pytest.fixture
def replicas(kube: ControlPlane, kuberl_crds: list[str], tmp_path: Path) -> Iterator[tuple[_Replicas, str]]:
    ns = kube.create_namespace("ha")
    reps = _Replicas(kube, tmp_path, ns)
    try:
        yield reps, ns
    finally:
        reps.stop()


def test_two_replicas_one_leader_and_failover(replicas: tuple[_Replicas, str]) -> None:
    reps, ns = replicas
    kube = reps.kube
    a = reps.start("op-a")
    wait_for(lambda: reps.holder() == "op-a", what="op-a leads", timeout=30)
    b = reps.start("op-b")
    kube.client.create("rltrainingjobs", ns, job("first"))
    wait_for(lambda: kube.client.get("rayjobs", ns, "first-r0"), what="RayJob of the first job", timeout=60)
    time.sleep(LEASE_S)  # long enough for a standby to act if it wrongly did
    assert reps.holder() == "op-a"
    assert _metric(a, "kuberl_operator_leader") == 1.0
    assert _metric(b, "kuberl_operator_leader") == 0.0
    # The standby ran no handler at all: no reconcile was counted there.
    assert _metric(b, "kuberl_operator_reconciles_total") is None

    a.kill()  # SIGKILL: no release, the Lease must expire
    killed = time.monotonic()
    kube.client.create("rltrainingjobs", ns, job("second"))
    wait_for(lambda: reps.holder() == "op-b", what="op-b takes the Lease", timeout=LEASE_S * 3)
    took_over = time.monotonic() - killed
    wait_for(lambda: kube.client.get("rayjobs", ns, "second-r0"), what="RayJob after failover", timeout=60)
    reconciled = time.monotonic() - killed
    print(f"failover: Lease taken {took_over:.1f} s after SIGKILL, RayJob created after {reconciled:.1f} s")
    # Within the lease duration of the last renewal (plus a retry period and this machine's load).
    assert took_over <= LEASE_S + 4
    assert _metric(b, "kuberl_operator_leader") == 1.0
    lease = _lease(kube, reps.release_ns, reps.lease) or {}
    assert lease["spec"]["leaseTransitions"] >= 1

    # A clean stop (SIGTERM, as in a rolling update) releases the Lease: a new replica takes it at once.
    b.stop()
    wait_for(lambda: reps.holder() in (None, ""), what="Lease released", timeout=10)
    c = reps.start("op-c")
    wait_for(lambda: reps.holder() == "op-c", what="op-c leads at once", timeout=LEASE_S)
    assert _metric(c, "kuberl_operator_leader") == 1.0


class _Trainer:
    """A trainer /status on 127.0.0.1 whose reply a test sets (bytes: anything, hostile included)."""

    def __init__(self) -> None:
        self.body = b"{}"
        owner = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.end_headers()
                with contextlib.suppress(OSError):  # the operator hangs up on an oversize body
                    self.wfile.write(owner.body)

            def log_message(self, *_: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"


@pytest.fixture
def single(
    kube: ControlPlane, kuberl_crds: list[str], tmp_path: Path
) -> Iterator[tuple[_Replicas, Operator, str, _Trainer]]:
    trainer = _Trainer()
    ns = kube.create_namespace("ctl")
    reps = _Replicas(kube, tmp_path, ns, extra={"KUBERL_STATUS_URL_TEMPLATE": trainer.url})
    op = reps.start("op-1")
    try:
        yield reps, op, ns, trainer
    finally:
        reps.stop()
        trainer.server.shutdown()


def test_generation_events_retry_and_deadline(single: tuple[_Replicas, Operator, str, _Trainer]) -> None:
    reps, op, ns, trainer = single
    kube = reps.kube
    spec = {"backoffLimit": 2, "resume": "never", "checkpoint": {"uri": "s3://ckpt/life"}}
    kube.client.create("rltrainingjobs", ns, job("life", **spec))
    wait_for(lambda: kube.client.get("rayjobs", ns, "life-r0"), what="RayJob life-r0")
    _ray(kube, ns, "life-r0", "Running", "RUNNING", rayClusterName="life-r0-x")
    wait_for(lambda: _status(kube, ns, "life").get("phase") == "Running", what="Running")

    # observedGeneration follows every edit (kstatus: Argo CD, Flux), on the job and each condition.
    for i, iterations in enumerate((50, 60), start=2):
        kube.client.patch("rltrainingjobs", ns, "life", {"spec": {"stop": {"iterations": iterations}}})
        obj = kube.client.get("rltrainingjobs", ns, "life") or {}
        assert obj["metadata"]["generation"] == i
        wait_for(lambda g=i: _status(kube, ns, "life").get("observedGeneration") == g, what=f"generation {i}")
    st = _status(kube, ns, "life")
    assert {c["type"]: c["observedGeneration"] for c in st["conditions"]}["Valid"] == 3
    assert next(c for c in st["conditions"] if c["type"] == "SpecChangePending")["status"] == "True"
    kube.kubectl(
        "wait",
        "--for=jsonpath={.status.observedGeneration}=3",
        "rltrainingjob/life",
        "-n",
        ns,
        "--timeout=30s",
    )

    # Hostile /status replies: the status is still written and encodable (no NaN reaches a patch).
    trainer.body = (
        b'{"iteration": 1e999, "timesteps": NaN, "episodeReturnMean": Infinity, "lastCheckpoint": 7}'
    )
    time.sleep(2.0)
    trainer.body = b'{"iteration": 5, "timesteps": 100, "episodeReturnMean": 1.5}' + b" " * (1 << 20)
    time.sleep(2.0)
    trainer.body = json.dumps({"iteration": 7, "timesteps": 700, "episodeReturnMean": 9.5}).encode()
    wait_for(lambda: _status(kube, ns, "life").get("iteration") == 7, what="valid progress mirrored")
    assert _status(kube, ns, "life")["phase"] == "Running"
    assert (_metric(op, 'kuberl_operator_progress_reads_total{result="rejected"}') or 0) >= 1

    # A failure: retried from the checkpoint, with Events that name what happened.
    _ray(kube, ns, "life-r0", "Failed", "FAILED", reason="AppFailed")
    r1 = wait_for(lambda: kube.client.get("rayjobs", ns, "life-r1"), what="retry RayJob")
    assert r1["spec"]["entrypoint"].endswith("--set resume=auto")
    reasons = wait_for(
        lambda: (r := _events(kube, ns, "life")) and "RetryingFromCheckpoint" in r and r, what="retry Events"
    )
    assert {"RayJobCreated", "TrainingStarted", "AttemptFailed", "RetryingFromCheckpoint"} <= set(reasons)
    assert not {"Pending", "Running", "Failed"} & set(reasons)  # never the phase name

    # Suspend and resume on the retried attempt.
    kube.client.patch("rltrainingjobs", ns, "life", {"spec": {"suspend": True}})
    wait_for(
        lambda: (kube.client.get("rayjobs", ns, "life-r1") or {})["spec"].get("suspend") is True,
        what="suspend",
    )
    wait_for(lambda: _status(kube, ns, "life").get("phase") == "Suspended", what="Suspended")
    _ray(kube, ns, "life-r1", "Suspended", "")
    kube.client.patch("rltrainingjobs", ns, "life", {"spec": {"suspend": False}})
    wait_for(
        lambda: (kube.client.get("rayjobs", ns, "life-r1") or {})["spec"].get("suspend") is False,
        what="resume",
    )
    wait_for(lambda: "Resumed" in _events(kube, ns, "life"), what="Resumed Event")

    # KubeRay's DeadlineExceeded is final although backoffLimit allows one more attempt.
    _ray(kube, ns, "life-r1", "Failed", "", reason="DeadlineExceeded")
    wait_for(lambda: _status(kube, ns, "life").get("phase") == "Failed", what="Failed")
    time.sleep(2.0)
    assert kube.client.get("rayjobs", ns, "life-r2") is None
    failed = next(c for c in _status(kube, ns, "life")["conditions"] if c["type"] == "Failed")
    assert failed["reason"] == "DeadlineExceeded"
    assert "DeadlineExceeded" in _events(kube, ns, "life")


def test_no_checkpoint_uri_is_warned_and_finished_jobs_cost_nothing(
    single: tuple[_Replicas, Operator, str, _Trainer],
) -> None:
    reps, op, ns, _ = single
    kube = reps.kube
    kube.client.create("rltrainingjobs", ns, job("bare", backoffLimit=1))
    wait_for(lambda: kube.client.get("rayjobs", ns, "bare-r0"), what="RayJob")
    wait_for(lambda: "NoCheckpointURI" in _events(kube, ns, "bare"), what="NoCheckpointURI Event")
    cond = next(c for c in _status(kube, ns, "bare")["conditions"] if c["type"] == "CheckpointsPersisted")
    assert (cond["status"], cond["reason"]) == ("False", "NoCheckpointURI")
    _ray(kube, ns, "bare-r0", "Failed", "FAILED")
    wait_for(lambda: "RetryingFromScratch" in _events(kube, ns, "bare"), what="RetryingFromScratch Event")
    _ray(kube, ns, "bare-r1", "Complete", "SUCCEEDED")
    wait_for(lambda: _status(kube, ns, "bare").get("phase") == "Succeeded", what="Succeeded")

    def passes() -> float:
        text = (
            urllib.request.urlopen(f"http://127.0.0.1:{op.metrics_port}/metrics", timeout=5).read().decode()
        )
        return sum(
            float(line.rsplit(" ", 1)[1])
            for line in text.splitlines()
            if line.startswith("kuberl_operator_reconciles_total{")
        )

    time.sleep(1.0)
    before = passes()
    time.sleep(5.0)  # ten progress intervals of this operator (KUBERL_SYNC_INTERVAL=0.5)
    assert passes() == before  # a finished job takes no pass
