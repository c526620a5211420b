"""The operator as a real `python -m kuberl_operator` process against a real kube-apiserver
(tests/fixtures/kube.py), authenticated as the chart's ServiceAccount with the chart's RBAC (a
`helm install` of charts/kuberl), so every request it makes is authorized as on a cluster.

KubeRay's side is played by writing the RayJob's status through its status subresource (the real
KubeRay v1.7 CRDs are installed, so every RayJob the operator writes is validated by them); the
trainer by a JSON `/status` on loopback. Garbage collection is the real kube-controller-manager's.
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
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from tests.fixtures.kube import ControlPlane, KubeClient
from tests.kube.malformed import OPERATOR_CASES, Case

pytestmark = [pytest.mark.integration, pytest.mark.kube]
REPO = Path(__file__).resolve().parents[2]
RELEASE = "rlop"  # the chart's objects are named rlop-kuberl (ServiceAccount, ClusterRole, …)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class Operator:
    """`python -m kuberl_operator` with the environment the chart's Deployment gives it (`install_chart`),
    except the ports (free ones on 127.0.0.1), its identity and a fast status pass."""

    def __init__(self, kubeconfig: Path, workdir: Path, extra_env: dict[str, str] | None = None) -> None:
        self.kubeconfig, self.workdir = kubeconfig, workdir
        self.extra_env = extra_env or {}
        self.proc: subprocess.Popen[bytes] | None = None
        self.metrics_port = _free_port()
        self.runs = 0
        self.health_url = ""

    def start(self) -> None:
        self.runs += 1
        health = _free_port()
        self.health_url = f"http://127.0.0.1:{health}/healthz"
        env = {
            **os.environ,
            **self.extra_env,
            "KUBECONFIG": str(self.kubeconfig),
            "KUBERL_SYNC_INTERVAL": "0.5",
            "KUBERL_OPERATOR_METRICS_PORT": str(self.metrics_port),
            "KUBERL_LIVENESS": f"http://127.0.0.1:{health}/healthz",
            "POD_NAME": f"operator-{self.runs}",
            # This checkout's operator and spec first (kuberl may be installed from another one).
            "PYTHONPATH": os.pathsep.join(str(REPO / d) for d in ("operator", "trainer_image", "")),
        }
        log = (self.workdir / f"operator-{self.runs}.log").open("wb")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "kuberl_operator"], env=env, stdout=log, stderr=log
        )
        wait_for(lambda: http_ok(self.health_url), what="operator liveness", timeout=60)

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


def http_ok(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=1) as resp:
            return bool(resp.status == 200)
    except OSError:
        return False


def wait_for(predicate: Callable[[], Any], *, what: str, timeout: float = 30) -> Any:
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


def install_chart(
    kube: ControlPlane, *, release: str, values: tuple[str, ...] = ()
) -> tuple[Path, dict[str, str]]:
    """`helm install` the chart into a namespace of its own, as docs/install.md does (its Deployment's
    pods never run: there is no kubelet). Returns a kubeconfig for the chart's ServiceAccount and the
    environment its Deployment gives the operator, so the process runs as the chart runs it (its
    leader-election Lease included: in a pod the Lease's namespace is the pod's, here the kubeconfig
    context's, the same namespace)."""
    ns = kube.create_namespace(release)
    kube.helm("install", release, str(REPO / "charts" / "kuberl"), "--namespace", ns, *values)
    deployment = kube.client.get("deployments", ns, f"{release}-kuberl")
    assert deployment is not None
    (container,) = deployment["spec"]["template"]["spec"]["containers"]
    env = {e["name"]: e["value"] for e in container.get("env", []) if "value" in e}
    return kube.service_account_kubeconfig(ns, f"{release}-kuberl"), env


def uninstall_chart(kube: ControlPlane, release: str) -> None:
    """`helm uninstall` a release of install_chart. Its ClusterRole and ClusterRoleBinding are cluster-wide
    and named after the release, so a later install of the same release name (another module importing
    the `cluster` fixture gets its own instance) would fail on them while the old release exists."""
    listed = kube.helm("list", "--all-namespaces", "--filter", f"^{release}$", "--output", "json")
    for rel in json.loads(listed.stdout or "[]"):
        kube.helm("uninstall", release, "--namespace", rel["namespace"], "--wait")


def delete_jobs(kube: ControlPlane, ns: str, *, timeout: float = 60) -> None:
    """Delete a namespace's RLTrainingJobs while their operator still runs (it removes its finalizers), so
    no operator of a later module inherits them."""
    for obj in kube.client.list("rltrainingjobs", ns):
        kube.client.delete("rltrainingjobs", ns, obj["metadata"]["name"])
    deadline = time.monotonic() + timeout
    while kube.client.list("rltrainingjobs", ns) and time.monotonic() < deadline:
        time.sleep(0.5)


@pytest.fixture(scope="module")
def trainer() -> Iterator[TrainerStatus]:
    """One trainer-like /status for every job: the operator is told where it is by its own setting
    (KUBERL_STATUS_URL_TEMPLATE, an operator-level value), never by anything in a job."""
    status = TrainerStatus()
    yield status
    status.server.shutdown()


@dataclass
class Cluster:
    api: KubeClient
    ns: str
    operator: Operator
    kube: ControlPlane


@pytest.fixture(scope="module")
def cluster(
    kube: ControlPlane,
    kuberl_crds: list[str],
    tmp_path_factory: pytest.TempPathFactory,
    trainer: TrainerStatus,
) -> Iterator[Cluster]:
    workdir = tmp_path_factory.mktemp("operator")
    kubeconfig, env = install_chart(kube, release=RELEASE)
    operator = Operator(kubeconfig, workdir, extra_env={**env, "KUBERL_STATUS_URL_TEMPLATE": trainer.url})
    operator.start()
    ns = kube.create_namespace("rl")
    try:
        yield Cluster(api=kube.client, ns=ns, operator=operator, kube=kube)
    finally:
        if operator.proc is not None and operator.proc.poll() is None:
            delete_jobs(kube, ns)
        operator.stop()
        print(operator.log())
        uninstall_chart(kube, RELEASE)


def job(name: str, **spec: Any) -> dict[str, Any]:
    return {
        "apiVersion": "kuberl.io/v1alpha1",
        "kind": "RLTrainingJob",
        "metadata": {"name": name, "annotations": spec.pop("annotations", {})},
        "spec": {"algorithm": "PPO", "env": "CartPole-v1", "backoffLimit": 0, **spec},
    }


def status(c: Cluster, name: str) -> dict[str, Any]:
    obj = c.api.get("rltrainingjobs", c.ns, name) or {}
    return dict(obj.get("status") or {})


def phase_is(c: Cluster, name: str, phase: str) -> Callable[[], bool]:
    return lambda: status(c, name).get("phase") == phase


def attempt_is(c: Cluster, name: str, attempt: int) -> Callable[[], bool]:
    return lambda: status(c, name).get("attempt") == attempt


def ray_status(c: Cluster, name: str, deployment: str, job_status: str, **extra: Any) -> None:
    """Play KubeRay: write the RayJob's status through its status subresource."""
    c.api.patch(
        "rayjobs",
        c.ns,
        name,
        {"status": {"jobDeploymentStatus": deployment, "jobStatus": job_status, **extra}},
        status=True,
    )


def rayjob(c: Cluster, name: str) -> dict[str, Any] | None:
    return c.api.get("rayjobs", c.ns, name)


def exists(c: Cluster, plural: str, name: str) -> Callable[[], dict[str, Any] | None]:
    return lambda: c.api.get(plural, c.ns, name)


def gone(c: Cluster, plural: str, name: str) -> Callable[[], bool]:
    return lambda: c.api.get(plural, c.ns, name) is None


def test_apply_status_progress_and_success(cluster: Cluster, trainer: TrainerStatus) -> None:
    c = cluster
    created = c.api.create("rltrainingjobs", c.ns, job("ok", metrics={"customMetricsInStatus": True}))
    ray_job = wait_for(lambda: rayjob(c, "ok-r0"), what="RayJob ok-r0")
    config_map = wait_for(lambda: c.api.get("configmaps", c.ns, "ok-r0-spec"), what="ConfigMap")
    for child in (ray_job, config_map):
        ref = child["metadata"]["ownerReferences"][0]
        assert ref["uid"] == created["metadata"]["uid"]
        assert ref["controller"] is True
        assert child["metadata"]["labels"]["kuberl.io/job"] == "ok"
    assert status(c, "ok")["rayJobName"] == "ok-r0"
    wait_for(phase_is(c, "ok", "Pending"), what="Pending")

    trainer.payload = {
        "iteration": 12,
        "timesteps": 48000,
        "episodeReturnMean": 187.5,
        "lastCheckpoint": "s3://b/c/10",
        "customMetrics": {"pole_angle": {"mean": 0.25, "min": -0.5, "max": 1.0}},
    }
    ray_status(c, "ok-r0", "Running", "RUNNING", rayClusterName="ok-r0-abcde")
    wait_for(phase_is(c, "ok", "Running"), what="Running")
    wait_for(lambda: status(c, "ok").get("iteration") == 12, what="progress mirrored")
    st = status(c, "ok")
    assert (st["timesteps"], st["episodeReturnMean"], st["lastCheckpoint"]) == (48000, 187.5, "s3://b/c/10")
    # spec.metrics.customMetricsInStatus: accepted by the CRD's status schema as the operator writes it
    assert st["customMetrics"] == {"pole_angle": {"mean": 0.25, "min": -0.5, "max": 1.0}}
    running = next(x for x in st["conditions"] if x["type"] == "Running")
    assert running["status"] == "True"

    ray_status(c, "ok-r0", "Complete", "SUCCEEDED")
    wait_for(phase_is(c, "ok", "Succeeded"), what="Succeeded")
    assert status(c, "ok")["completionTime"]
    reasons = {
        e.get("reason") for e in c.api.list("events", c.ns) if e.get("involvedObject", {}).get("name") == "ok"
    }
    assert {"RayJobCreated", "TrainingStarted", "TrainingSucceeded"} <= reasons


def test_custom_metric_names_no_longer_reported_leave_the_status(
    cluster: Cluster, trainer: TrainerStatus
) -> None:
    """The status is written with a JSON merge patch, which keeps the keys it does not name: a name the
    trainer stops reporting must still leave status.customMetrics on the real API server."""
    c = cluster
    c.api.create("rltrainingjobs", c.ns, job("cm", metrics={"customMetricsInStatus": True}))
    wait_for(lambda: rayjob(c, "cm-r0"), what="RayJob cm-r0")
    trainer.payload = {"iteration": 1, "customMetrics": {"a": {"mean": 1.0}, "b": {"mean": 2.0}}}
    ray_status(c, "cm-r0", "Running", "RUNNING", rayClusterName="cm-r0-abcde")
    wait_for(lambda: set(status(c, "cm").get("customMetrics") or ()) == {"a", "b"}, what="a and b")
    trainer.payload = {"iteration": 2, "customMetrics": {"b": {"mean": 3.0}}}
    wait_for(lambda: status(c, "cm").get("iteration") == 2, what="iteration 2 mirrored")
    assert status(c, "cm")["customMetrics"] == {"b": {"mean": 3.0}}
    trainer.payload = {"iteration": 3, "customMetrics": {}}
    wait_for(lambda: status(c, "cm").get("iteration") == 3, what="iteration 3 mirrored")
    assert "customMetrics" not in status(c, "cm")
    trainer.payload = {}


def test_invalid_spec_fails_with_field_path(cluster: Cluster) -> None:
    """What the schema cannot check (spec.config against the algorithm's model) the operator refuses."""
    c = cluster
    c.api.create("rltrainingjobs", c.ns, job("bad", config={"num_epochs": 0}))
    wait_for(phase_is(c, "bad", "Failed"), what="Failed")
    valid = next(x for x in status(c, "bad")["conditions"] if x["type"] == "Valid")
    assert valid["status"] == "False"
    assert valid["message"].startswith("spec.config.num_epochs:")
    time.sleep(1.0)
    assert rayjob(c, "bad-r0") is None
    assert c.api.get("configmaps", c.ns, "bad-r0-spec") is None


def _valid_condition(c: Cluster, name: str) -> dict[str, Any] | None:
    valid = [x for x in status(c, name).get("conditions", []) if x["type"] == "Valid"]
    return valid[0] if valid and valid[0]["status"] == "False" else None


@pytest.mark.parametrize("case", OPERATOR_CASES, ids=lambda case: case.id)
def test_malformed_job_is_refused_by_the_operator(cluster: Cluster, case: Case) -> None:
    """Accepted by the server (the schema cannot express the rule), refused by the operator with a
    Valid=False condition that names the field, and nothing is created for it."""
    c = cluster
    name = f"mal-{OPERATOR_CASES.index(case)}"
    c.api.create("rltrainingjobs", c.ns, case.document(name))
    valid = wait_for(lambda: _valid_condition(c, name), what=f"Valid=False on {case.id}")
    assert valid["message"].startswith(case.field + ":") or valid["message"].startswith(case.field + "."), (
        valid
    )
    assert status(c, name)["phase"] == "Failed"
    assert rayjob(c, f"{name}-r0") is None


def test_invalid_edit_keeps_the_running_rayjob(cluster: Cluster) -> None:
    c = cluster
    c.api.create("rltrainingjobs", c.ns, job("edit", resume="never"))
    wait_for(lambda: rayjob(c, "edit-r0"), what="RayJob")
    ray_status(c, "edit-r0", "Running", "RUNNING")
    wait_for(phase_is(c, "edit", "Running"), what="Running")
    c.api.patch("rltrainingjobs", c.ns, "edit", {"spec": {"config": {"num_epochs": 0}}})

    wait_for(lambda: _valid_condition(c, "edit"), what="Valid=False")
    valid = next(x for x in status(c, "edit")["conditions"] if x["type"] == "Valid")
    assert valid["reason"] == "InvalidSpecEdit"
    assert valid["message"].startswith("spec.config.num_epochs:")
    assert status(c, "edit")["phase"] == "Running"
    # The status loop still follows the RayJob, which runs the last valid spec.
    ray_status(c, "edit-r0", "Complete", "SUCCEEDED")
    wait_for(phase_is(c, "edit", "Succeeded"), what="Succeeded despite the invalid edit")
    assert rayjob(c, "edit-r0") is not None


def test_suspend_and_resume(cluster: Cluster) -> None:
    c = cluster
    c.api.create("rltrainingjobs", c.ns, job("sus", resume="never", activeDeadlineSeconds=3600))
    wait_for(lambda: rayjob(c, "sus-r0"), what="RayJob")
    ray_status(c, "sus-r0", "Running", "RUNNING")
    wait_for(phase_is(c, "sus", "Running"), what="Running")
    c.api.patch("rltrainingjobs", c.ns, "sus", {"spec": {"suspend": True}})
    wait_for(lambda: (rayjob(c, "sus-r0") or {})["spec"].get("suspend") is True, what="RayJob suspended")
    wait_for(phase_is(c, "sus", "Suspended"), what="Suspended")
    ray_status(c, "sus-r0", "Suspended", "")
    assert (rayjob(c, "sus-r0") or {})["spec"]["activeDeadlineSeconds"] == 3600
    # Resume with a field removed from the spec: the RayJob's spec is replaced, not merged, so the
    # field is gone from the RayJob too (a merge patch would have kept the old deadline).
    c.api.patch("rltrainingjobs", c.ns, "sus", {"spec": {"suspend": False, "activeDeadlineSeconds": None}})
    wait_for(lambda: (rayjob(c, "sus-r0") or {})["spec"].get("suspend") is False, what="resumed")
    resumed = (rayjob(c, "sus-r0") or {})["spec"]
    assert resumed["entrypoint"].endswith("--set resume=auto")
    assert "activeDeadlineSeconds" not in resumed
    wait_for(phase_is(c, "sus", "Pending"), what="Pending while resuming")
    ray_status(c, "sus-r0", "Running", "RUNNING")
    wait_for(phase_is(c, "sus", "Running"), what="Running again")


def test_failed_rayjob_retried_up_to_backoff_limit(cluster: Cluster) -> None:
    c = cluster
    c.api.create("rltrainingjobs", c.ns, job("flaky", backoffLimit=2, resume="never"))
    first = wait_for(lambda: rayjob(c, "flaky-r0"), what="r0")
    assert first["spec"]["entrypoint"].endswith("resume=never")
    for attempt in (0, 1):
        ray_status(c, f"flaky-r{attempt}", "Failed", "FAILED", reason="AppFailed")
        nxt = wait_for(exists(c, "rayjobs", f"flaky-r{attempt + 1}"), what=f"attempt {attempt + 1}")
        assert nxt["spec"]["entrypoint"].endswith("--set resume=auto")
        wait_for(attempt_is(c, "flaky", attempt + 1), what="attempt in status")
    ray_status(c, "flaky-r2", "Failed", "FAILED", reason="AppFailed")
    wait_for(phase_is(c, "flaky", "Failed"), what="Failed after backoffLimit")
    time.sleep(1.0)
    assert rayjob(c, "flaky-r3") is None
    port = c.operator.metrics_port
    metrics = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5).read().decode()
    assert f'kuberl_operator_retries_total{{namespace="{c.ns}"}} 2.0' in metrics
    assert 'kuberl_operator_reconciles_total{handler="create",result="success"}' in metrics
    assert f'kuberl_operator_jobs{{namespace="{c.ns}",phase="Failed"}}' in metrics


POD_BAD_ARGS = ("--set", "algorithm=examples.custom_algo:Nope", "--set", "metrics.enabled=false")


def test_a_job_the_trainer_refuses_fails_at_once(cluster: Cluster, tmp_path: Path) -> None:
    """A custom algorithm's class is checked only in the pod, where `kuberl run` exits 2. Ray's job
    supervisor puts the exit status and the log tail in the job's message, which KubeRay copies into the
    RayJob's status: here the real CLI's output on the same spec, in Ray's words. No retry follows,
    although backoffLimit allows two."""
    c = cluster
    c.api.create(
        "rltrainingjobs", c.ns, job("refused", algorithm="examples.custom_algo:Nope", backoffLimit=2)
    )
    wait_for(lambda: rayjob(c, "refused-r0"), what="RayJob refused-r0 (the operator defers to the trainer)")
    pod = subprocess.run(
        [
            sys.executable,
            "-m",
            "kuberl.cli",
            "run",
            str(REPO / "examples" / "ppo-custom-loss.yaml"),
            *POD_BAD_ARGS,
        ],
        cwd=tmp_path,
        env={
            **os.environ,
            "PYTHONPATH": os.pathsep.join(str(REPO / d) for d in ("operator", "trainer_image", "")),
        },
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert pod.returncode == 2, pod.stderr[-2000:]
    message = (
        f"Job entrypoint command failed with exit code {pod.returncode}, last available logs (truncated to "
        "20,000 chars):\n" + (pod.stdout + pod.stderr)[-20000:]
    )
    ray_status(c, "refused-r0", "Failed", "FAILED", reason="AppFailed", message=message)
    wait_for(phase_is(c, "refused", "Failed"), what="Failed at once")
    st = status(c, "refused")
    assert st["attempt"] == 0
    conds = {x["type"]: x for x in st["conditions"]}
    assert (conds["Failed"]["reason"], conds["Valid"]["status"], conds["Valid"]["reason"]) == (
        "InvalidSpec",
        "False",
        "InvalidSpec",
    )
    assert (
        "spec.algorithm: module 'examples.custom_algo' has no attribute 'Nope'" in conds["Valid"]["message"]
    )
    assert "not retried" in st["message"]
    time.sleep(1.0)  # a pass that retried would have created the next attempt's RayJob by now
    assert rayjob(c, "refused-r1") is None

    def reasons() -> list[str]:
        events = c.api.list("events", c.ns)
        return [e.get("reason") for e in events if e.get("involvedObject", {}).get("name") == "refused"]

    wait_for(lambda: "InvalidSpec" in reasons(), what="InvalidSpec event")
    assert "AttemptFailed" not in reasons()


def test_delete_removes_children(cluster: Cluster) -> None:
    c = cluster
    c.api.create("rltrainingjobs", c.ns, job("gone", backoffLimit=1))
    wait_for(lambda: rayjob(c, "gone-r0"), what="r0")
    ray_status(c, "gone-r0", "Failed", "FAILED")
    wait_for(lambda: rayjob(c, "gone-r1"), what="r1")
    wait_for(
        lambda: (
            "kuberl.io/finalizer"
            in (c.api.get("rltrainingjobs", c.ns, "gone") or {})["metadata"].get("finalizers", [])
        ),
        what="finalizer",
    )
    c.api.delete("rltrainingjobs", c.ns, "gone")
    wait_for(lambda: c.api.get("rltrainingjobs", c.ns, "gone") is None, what="job deleted")
    for name in ("gone-r0", "gone-r1"):
        wait_for(gone(c, "rayjobs", name), what=f"RayJob {name} deleted")
        wait_for(gone(c, "configmaps", f"{name}-spec"), what=f"ConfigMap {name}-spec deleted")


def test_children_are_garbage_collected_without_the_operator(cluster: Cluster) -> None:
    """The children's owner references alone remove them: with the operator down and its finalizer
    removed (as after an uninstall), kube-controller-manager's garbage collector deletes them."""
    c = cluster
    c.api.create("rltrainingjobs", c.ns, job("orphan"))
    wait_for(lambda: rayjob(c, "orphan-r0"), what="RayJob")
    wait_for(lambda: c.api.get("configmaps", c.ns, "orphan-r0-spec"), what="ConfigMap")
    c.operator.kill()
    try:
        c.api.patch("rltrainingjobs", c.ns, "orphan", {"metadata": {"finalizers": None}})
        c.api.delete("rltrainingjobs", c.ns, "orphan")
        wait_for(lambda: c.api.get("rltrainingjobs", c.ns, "orphan") is None, what="job deleted")
        wait_for(lambda: rayjob(c, "orphan-r0") is None, what="RayJob garbage-collected", timeout=60)
        wait_for(lambda: c.api.get("configmaps", c.ns, "orphan-r0-spec") is None, what="ConfigMap collected")
    finally:
        c.operator.start()


def test_restart_mid_reconcile_keeps_one_rayjob(cluster: Cluster) -> None:
    c = cluster
    c.operator.kill()
    names = [f"rs{i}" for i in range(6)]
    for name in names:
        c.api.create("rltrainingjobs", c.ns, job(name))
    # Names saved, children not created: what a kill between the two steps leaves behind.
    c.api.patch(
        "rltrainingjobs",
        c.ns,
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
    c.operator.start()
    time.sleep(0.4)
    c.operator.kill()  # killed again while the creates are in flight
    c.operator.start()
    for name in names:
        wait_for(exists(c, "rayjobs", f"{name}-r0"), what=f"RayJob of {name}")
    time.sleep(1.5)
    rayjobs = [r["metadata"]["name"] for r in c.api.list("rayjobs", c.ns)]
    for name in names:
        assert [r for r in rayjobs if r.startswith(f"{name}-r")] == [f"{name}-r0"]


def test_namespaced_mode_reconciles_with_the_chart_roles(cluster: Cluster, tmp_path: Path) -> None:
    """`watch.namespaces` mode: the chart grants Roles in the listed namespaces only (plus the
    cluster-scoped reads kopf needs), and an operator with exactly that reconciles a job there. The
    module's cluster-wide operator is stopped meanwhile, so only this one can have done it."""
    kube = cluster.kube
    team = kube.create_namespace("team")
    kubeconfig, env = install_chart(kube, release="rlns", values=("--set", f"watch.namespaces={{{team}}}"))
    assert env["KUBERL_NAMESPACES"] == team
    op = Operator(kubeconfig, tmp_path, extra_env={**env, "KUBERL_STATUS_URL_TEMPLATE": "http://127.0.0.1:9"})
    cluster.operator.stop()
    try:
        op.start()
        kube.client.create("rltrainingjobs", team, job("scoped"))
        wait_for(
            lambda: kube.client.get("rayjobs", team, "scoped-r0"), what="RayJob in the watched namespace"
        )
        wait_for(lambda: kube.client.get("configmaps", team, "scoped-r0-spec"), what="ConfigMap")
        # Outside its namespaces it has no rights, and so does nothing there.
        sa_cannot = kube.kubectl(
            "auth", "can-i", "create", "rayjobs.ray.io", "-n", cluster.ns, kubeconfig=kubeconfig, check=False
        )
        assert sa_cannot.stdout.strip() == "no"
    finally:
        op.stop()
        print(op.log())
        uninstall_chart(kube, "rlns")
        cluster.operator.start()
