"""Scale: N RLTrainingJobs applied at once to the Kubernetes emulator; time until every RayJob exists,
and the operator's peak RSS. Prints a markdown table.

    python bench/bench_operator_scale.py [--jobs 200]
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
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from tests.fixtures.k8s import start_emulator  # noqa: E402

NS = "bench"


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


def _wait_healthy(url: str, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(url, timeout=1):
                return
        except OSError:
            time.sleep(0.2)
    raise RuntimeError("operator did not become healthy")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--jobs", type=int, default=200)
    parser.add_argument("--timeout", type=float, default=300)
    args = parser.parse_args()

    workdir = Path(tempfile.mkdtemp(prefix="kuberl-bench-"))
    emulator = start_emulator(workdir)
    health = _free_port()
    env = {
        **os.environ,
        "KUBECONFIG": str(emulator.kubeconfig),
        "KUBERL_OPERATOR_METRICS_PORT": str(_free_port()),
        "KUBERL_LIVENESS": f"http://127.0.0.1:{health}/healthz",
        "KUBERL_SYNC_INTERVAL": "10",
        "PYTHONPATH": str(REPO),
    }
    log = (workdir / "operator.log").open("wb")
    proc = subprocess.Popen([sys.executable, "-m", "kuberl_operator"], env=env, stdout=log, stderr=log)
    try:
        _wait_healthy(f"http://127.0.0.1:{health}/healthz", 30)
        idle_rss = _peak_rss_mib(proc.pid)

        def apply(i: int) -> None:
            emulator.create(
                "rltrainingjobs",
                NS,
                {
                    "apiVersion": "kuberl.io/v1alpha1",
                    "kind": "RLTrainingJob",
                    "metadata": {"name": f"job-{i:04d}", "namespace": NS},
                    "spec": {"algorithm": "PPO", "env": "CartPole-v1"},
                },
            )

        start = time.monotonic()
        with ThreadPoolExecutor(16) as pool:
            list(pool.map(apply, range(args.jobs)))
        applied = time.monotonic() - start
        expected = {f"job-{i:04d}-r0" for i in range(args.jobs)}
        seen: set[str] = set()
        while time.monotonic() - start < args.timeout:
            seen = {r["metadata"]["name"] for r in emulator.list("rayjobs", NS)}
            if expected <= seen:
                break
            time.sleep(0.25)
        elapsed = time.monotonic() - start
        peak = _peak_rss_mib(proc.pid)
        done = len(expected & seen)
    finally:
        proc.terminate()
        try:
            proc.wait(15)
        except subprocess.TimeoutExpired:
            proc.kill()
        emulator.stop()

    print(f"| metric | value ({os.cpu_count()} CPUs, emulator in the bench process) |")
    print("|---|---|")
    print(f"| jobs applied | {args.jobs} (in {applied:.1f} s) |")
    print(f"| RayJobs created | {done}/{args.jobs} |")
    print(f"| time until every RayJob exists | {elapsed:.1f} s |")
    print(f"| operator RSS idle | {idle_rss:.0f} MiB |")
    print(f"| operator peak RSS | {peak:.0f} MiB |")


if __name__ == "__main__":
    main()
