"""The first minute: `kuberl run JOB` timed in phases, in a fresh process per repetition.

    python bench/bench_startup.py [--job examples/ppo-job.yaml] [--reps 3] [--set key=value …]

Phases (wall clock, seconds): `interpreter` (start of a bare `python -c pass`), `start-up` (process start
→ the algorithm is built and Ray, if any, is up: imports, preflight, env runners), `training` (the
iterations), `shutdown` (last result → process exit: final checkpoint, runners and Ray stopped), and
`total`. Each phase also in CPU seconds (`cpu …`: the process's user+sys over all its threads and
children, which a shared machine's load distorts less than wall time). It also counts warnings printed on
stderr. Not a timed test: the numbers go to bench/RESULTS.md.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
# Runs inside the measured process: timestamps of the phases through run_job's callbacks.
PROBE = """
import json, sys, time
T0 = float(sys.argv[1])
marks = {}
from kuberl.spec import load_job
from kuberl import trainer
job = load_job(sys.argv[2], sys.argv[3:])
cpu = {}
def on_start(algo): marks["built"] = time.time() - T0; cpu["built"] = time.process_time()
def on_result(r):
    marks["last_result"] = time.time() - T0; cpu["last_result"] = time.process_time()
    marks.setdefault("first_result", marks["last_result"])
outcome = trainer.run_job(job, on_start=on_start, on_result=on_result)
marks["returned"] = time.time() - T0
import gc; gc.freeze()  # as kuberl.cli.main does before the interpreter exits
marks["timesteps"] = (outcome.result or {}).get("timesteps_total")
marks["training_s"] = (outcome.result or {}).get("time_total_s")
marks["cpu"] = cpu
print("MARKS " + json.dumps(marks), flush=True)
"""


def _children_cpu() -> float:
    """User + system CPU seconds of the waited-for child processes so far."""
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def one(job: str, sets: list[str]) -> dict[str, float]:
    with tempfile.TemporaryDirectory() as tmp:
        overrides = [*sets, f"runDir={tmp}/run", "metrics.port=0"]
        env = {**os.environ, "PYTHONPATH": os.pathsep.join((str(ROOT / "trainer_image"), str(ROOT)))}
        t0, cpu0 = time.time(), _children_cpu()
        res = subprocess.run(
            [sys.executable, "-c", PROBE, str(t0), str(ROOT / job), *overrides],
            capture_output=True,
            text=True,
            env=env,
            cwd=tmp,
        )
        total, total_cpu = time.time() - t0, _children_cpu() - cpu0
    if res.returncode != 0:
        raise SystemExit(res.stderr)
    marks = json.loads(res.stdout.split("MARKS ", 1)[1])
    warnings = [line for line in res.stderr.splitlines() if "warn" in line.lower()]
    cpu = marks["cpu"]
    return {
        "start-up": marks["built"],
        "training": marks["last_result"] - marks["built"],
        "shutdown": total - marks["last_result"],
        "total": total,
        "cpu start-up": cpu["built"],
        "cpu training": cpu["last_result"] - cpu["built"],
        "cpu shutdown": total_cpu - cpu["last_result"],
        "cpu total": total_cpu,
        "timesteps": float(marks["timesteps"] or 0),
        "warnings": float(len(warnings)),
    }


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--job", default="examples/ppo-job.yaml")
    p.add_argument("--reps", type=int, default=3)
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE")
    args = p.parse_args()
    t = time.time()
    subprocess.run([sys.executable, "-c", "pass"], check=True)
    interpreter = time.time() - t
    rows = [one(args.job, args.set) for _ in range(args.reps)]
    print(
        f"job {args.job} {' '.join(args.set)}; load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores"
    )
    print(f"interpreter start: {interpreter:.2f} s")
    print("| phase | median (s) | min | max |")
    print("|---|---|---|---|")
    keys = ("start-up", "training", "shutdown", "total", "cpu start-up", "cpu training", "cpu shutdown")
    for key in (*keys, "cpu total", "timesteps", "warnings"):
        v = [r[key] for r in rows]
        print(f"| {key} | {statistics.median(v):.2f} | {min(v):.2f} | {max(v):.2f} |")


if __name__ == "__main__":
    main()
