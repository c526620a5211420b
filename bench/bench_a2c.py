"""Wall-clock time to CartPole-v1 mean return ≥ 475: kuberl A2C vs Stable-Baselines3 A2C (rl-zoo
hyperparameters). RLlib no longer ships A2C, so it is not in this race.

Every run is a fresh child process, so "from process start" includes interpreter start, imports and
(for Ray users) cluster start; "from training start" begins after the algorithm is built. Peak
memory is the largest summed RSS of the child's whole process tree (Ray workers included),
sampled every 50 ms. Runs alternate between frameworks seed by seed, so drift in machine load
hits all of them alike.

    python bench/bench_a2c.py --seeds 5 [--threshold 475]
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import platform
import statistics
import subprocess
import sys
import time
from pathlib import Path

import psutil

HERE = Path(__file__).resolve().parent
RUNNERS = {
    "kuberl": [str(HERE / "runners" / "kuberl_a2c.py")],
    "kuberl (1 Ray runner)": [str(HERE / "runners" / "kuberl_a2c.py"), "--env-runners", "1"],
    "sb3": [str(HERE / "runners" / "sb3_a2c.py")],
}


def tree_rss(proc: psutil.Process) -> int:
    total = 0
    for p in [proc, *proc.children(recursive=True)]:
        with contextlib.suppress(psutil.Error):
            total += p.memory_info().rss
    return total


def run_one(name: str, seed: int, threshold: float) -> dict[str, object]:
    env = {**os.environ, "RAY_USAGE_STATS_ENABLED": "0", "RAY_AUTH_MODE": "disabled", "PYTHONUNBUFFERED": "1"}
    t0 = time.time()
    child = subprocess.Popen(
        [sys.executable, *RUNNERS[name], "--seed", str(seed), "--threshold", str(threshold)],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
        env=env,
    )
    proc = psutil.Process(child.pid)
    peak = 0
    while child.poll() is None:
        with contextlib.suppress(psutil.Error):
            peak = max(peak, tree_rss(proc))
        time.sleep(0.05)
    out = child.stdout.read() if child.stdout else ""
    lines = [line for line in out.splitlines() if line.startswith("{")]
    if not lines:
        return {"framework": name, "seed": seed, "solved": False, "peak_mb": peak / 2**20}
    r = json.loads(lines[-1])
    solved = r["solved"] is not None
    return {
        "framework": name,
        "seed": seed,
        "solved": solved,
        "from_process_s": (r["solved"] - t0) if solved else None,
        "from_train_s": (r["solved"] - r["train_start"]) if solved else None,
        "startup_s": r["train_start"] - t0,
        "steps": r["steps"],
        "return": r["ret"],
        "peak_mb": peak / 2**20,
    }


def median(xs: list[float | None]) -> float | None:
    vals = [x for x in xs if x is not None]
    return statistics.median(vals) if vals else None


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--seeds", type=int, default=5)
    ap.add_argument("--threshold", type=float, default=475.0, help="mean return of the last 100 episodes")
    ap.add_argument("--ray", action="store_true", help="also run kuberl with one Ray env runner")
    ap.add_argument("--json", type=Path, help="also write raw runs as JSON")
    args = ap.parse_args()
    runs: list[dict[str, object]] = []
    for seed in range(args.seeds):
        for name in ("kuberl", "sb3", *(["kuberl (1 Ray runner)"] if args.ray else [])):
            runs.append(run_one(name, seed, args.threshold))
            print(json.dumps(runs[-1]), file=sys.stderr, flush=True)
    if args.json:
        args.json.write_text(json.dumps(runs, indent=2))

    names = [n for n in RUNNERS if any(r["framework"] == n for r in runs)]
    summary = {}
    for n in names:
        rs = [r for r in runs if r["framework"] == n]
        summary[n] = {
            "solved": f"{sum(bool(r['solved']) for r in rs)}/{len(rs)}",
            "proc": median([r.get("from_process_s") for r in rs]),  # type: ignore[misc]
            "train": median([r.get("from_train_s") for r in rs]),  # type: ignore[misc]
            "startup": median([r.get("startup_s") for r in rs]),  # type: ignore[misc]
            "steps": median([float(r["steps"]) for r in rs if r.get("solved")]),  # type: ignore[arg-type]
            "mem": median([r["peak_mb"] for r in rs]),  # type: ignore[misc]
        }
    base = summary["kuberl"]

    def ratio(a: float | None, b: float | None) -> str:
        return f"{a / b:.1f}×" if a and b else "—"

    def f(x: float | None, spec: str = ".1f") -> str:
        return "—" if x is None else format(x, spec)

    print(
        f"A2C, CartPole-v1 to mean return ≥ {args.threshold:g} — {platform.node()}, {psutil.cpu_count()} CPUs, "
        f"{time.strftime('%Y-%m-%d')}, seeds 0..{args.seeds - 1} (medians)\n"
    )
    print(
        "| framework | solved | from process start (s) | from training start (s) | start-up (s) | env steps | "
        "peak RSS (MB) | kuberl speed-up (process / training) |"
    )
    print("|---|---|---|---|---|---|---|---|")
    for n in names:
        s = summary[n]
        print(
            f"| {n} | {s['solved']} | {f(s['proc'])} | {f(s['train'])} | {f(s['startup'])} | {f(s['steps'], ',.0f')} "
            f"| {f(s['mem'], '.0f')} | {ratio(s['proc'], base['proc'])} / {ratio(s['train'], base['train'])} |"
        )


if __name__ == "__main__":
    main()
