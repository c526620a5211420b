"""Scale: N RLTrainingJobs applied at once to a real kube-apiserver (tests/fixtures/kube.py: etcd,
kube-apiserver and kube-controller-manager built by scripts/install-tools.sh), reconciled by a real
`python -m kuberl_operator` running as the chart's ServiceAccount (helm install; RBAC enforced).

Measured: time until every RayJob exists; then, playing KubeRay, every RayJob set Running and then
Complete through its status subresource, and the time until every job shows the phase; the
operator's peak RSS (VmHWM) and CPU seconds (utime + stime) for each stage; and its CPU over an idle
window with every job finished (finished jobs must cost nothing). Prints a markdown table.

    python bench/bench_operator_scale.py [--jobs 1000] [--idle 60]

Needs the control-plane binaries (`bash scripts/install-tools.sh`) and KubeRay's CRDs (see
tests/fixtures/kube.py). Results: bench/RESULTS.md.
"""

from __future__ import annotations

import argparse
import os
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from tests.fixtures.kube import ControlPlane, start_control_plane  # noqa: E402

RELEASE = "bench"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _peak_rss_mib(pid: int) -> float:
    """VmHWM: the kernel's high-water mark of the process's resident set."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def _cpu_s(pid: int) -> float:
    """utime + stime of the process, in seconds."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _wait(predicate: Callable[[], bool], timeout: float, what: str) -> float:
    start = time.monotonic()
    while time.monotonic() - start < timeout:
        if predicate():
            return time.monotonic() - start
        time.sleep(0.5)
    raise RuntimeError(f"timed out after {timeout:.0f} s waiting for {what}")


def _wait_healthy(url: str, timeout: float) -> None:
    def ok() -> bool:
        try:
            with urllib.request.urlopen(url, timeout=1):
                return True
        except OSError:
            return False

    _wait(ok, timeout, "operator health")


def _start_operator(plane: ControlPlane, workdir: Path) -> tuple[subprocess.Popen[bytes], str]:
    release_ns = plane.create_namespace("kuberl-system")
    plane.kubectl("apply", "-f", str(REPO / "crds"))
    plane.helm("install", RELEASE, str(REPO / "charts" / "kuberl"), "--namespace", release_ns)
    kubeconfig = plane.service_account_kubeconfig(release_ns, f"{RELEASE}-kuberl")
    health = _free_port()
    metrics = _free_port()
    env = {
        **os.environ,
        "KUBECONFIG": str(kubeconfig),
        "KUBERL_OPERATOR_METRICS_PORT": str(metrics),
        "KUBERL_LIVENESS": f"http://127.0.0.1:{health}/healthz",
        "KUBERL_LEASE_NAME": f"{RELEASE}-kuberl",  # what the chart's Deployment sets
        "PYTHONPATH": os.pathsep.join(str(REPO / d) for d in ("operator", "trainer_image", ".")),
    }
    log = (workdir / "operator.log").open("wb")
    proc = subprocess.Popen([sys.executable, "-m", "kuberl_operator"], env=env, stdout=log, stderr=log)
    _wait_healthy(f"http://127.0.0.1:{health}/healthz", 60)
    return proc, f"http://127.0.0.1:{metrics}/metrics"


def _job(i: int) -> dict[str, Any]:
    return {
        "apiVersion": "kuberl.io/v1alpha1",
        "kind": "RLTrainingJob",
        "metadata": {"name": f"job-{i:04d}"},
        "spec": {"algorithm": "PPO", "env": "CartPole-v1", "checkpoint": {"uri": f"s3://bench/job-{i:04d}"}},
    }


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--jobs", type=int, default=1000)
    parser.add_argument("--timeout", type=float, default=900)
    parser.add_argument("--idle", type=float, default=60, help="seconds of the idle window at the end")
    args = parser.parse_args()

    load = os.getloadavg()
    workdir = Path(tempfile.mkdtemp(prefix="kuberl-bench-"))
    plane, procs = start_control_plane(workdir)
    rows: list[tuple[str, str]] = []
    try:
        proc, metrics_url = _start_operator(plane, workdir)
        ns = plane.create_namespace("bench")
        api = plane.client
        names = [f"job-{i:04d}" for i in range(args.jobs)]
        cpu0, t0 = _cpu_s(proc.pid), time.monotonic()
        with ThreadPoolExecutor(8) as pool:
            list(pool.map(lambda i: api.create("rltrainingjobs", ns, _job(i)), range(args.jobs)))
        applied = time.monotonic() - t0

        def count_rayjobs() -> int:
            return len(api.list("rayjobs", ns))

        _wait(lambda: count_rayjobs() >= args.jobs, args.timeout, "every RayJob")
        created = time.monotonic() - t0
        cpu_create = _cpu_s(proc.pid) - cpu0
        rows += [
            ("jobs applied (8 client threads)", f"{args.jobs} in {applied:.1f} s"),
            ("time until every RayJob exists (from the first apply)", f"{created:.1f} s"),
            ("operator CPU until then", f"{cpu_create:.1f} s"),
        ]

        def phases(phase: str) -> int:
            return sum(
                1 for j in api.list("rltrainingjobs", ns) if (j.get("status") or {}).get("phase") == phase
            )

        def set_all(deployment: str, job_status: str) -> tuple[float, float]:
            cpu, start = _cpu_s(proc.pid), time.monotonic()
            body = {"status": {"jobDeploymentStatus": deployment, "jobStatus": job_status}}
            with ThreadPoolExecutor(8) as pool:
                list(pool.map(lambda n: api.patch("rayjobs", ns, f"{n}-r0", body, status=True), names))
            return cpu, start

        for deployment, job_status, phase in (
            ("Running", "RUNNING", "Running"),
            ("Complete", "SUCCEEDED", "Succeeded"),
        ):
            cpu, start = set_all(deployment, job_status)
            _wait(lambda p=phase: phases(p) >= args.jobs, args.timeout, f"every job {phase}")
            rows += [
                (f"RayJobs set {deployment} → every job {phase}", f"{time.monotonic() - start:.1f} s"),
                ("operator CPU for that", f"{_cpu_s(proc.pid) - cpu:.1f} s"),
            ]
        cpu = _cpu_s(proc.pid)
        time.sleep(args.idle)
        rows.append(
            (
                f"operator CPU over {args.idle:.0f} s idle, all {args.jobs} jobs finished",
                f"{_cpu_s(proc.pid) - cpu:.2f} s",
            )
        )
        rows.append(("operator peak RSS (VmHWM)", f"{_peak_rss_mib(proc.pid):.0f} MiB"))
        with urllib.request.urlopen(metrics_url, timeout=5) as resp:
            text = resp.read().decode()
        succeeded = next(
            (
                line.split()[-1]
                for line in text.splitlines()
                if line.startswith("kuberl_operator_jobs{") and 'phase="Succeeded"' in line
            ),
            "?",
        )
        rows.append(("kuberl_operator_jobs{phase=Succeeded}", succeeded))
        proc.terminate()
        proc.wait(30)
    finally:
        procs.stop()

    print(
        f"| metric | value ({os.cpu_count()} CPUs, load average {load[0]:.2f} / {load[1]:.2f} / {load[2]:.2f} at start) |"
    )
    print("|---|---|")
    for name, value in rows:
        print(f"| {name} | {value} |")


if __name__ == "__main__":
    main()
