"""Wall-clock time to a Pendulum-v1 return threshold: kuberl SAC and TD3 vs Stable-Baselines3 with the
rl-baselines3-zoo hyperparameters.

Threshold (issue 5): SAC −200, TD3 −250, on the evaluation mean of 10 episodes of the deterministic
policy, checked every 1,000 env steps in both frameworks by the same code (runners/offpolicy_eval.py).
"training" excludes the time spent evaluating (identical work for both, but not part of learning).

Every run is a fresh child process, so "from process start" includes interpreter start, imports and
(for kuberl) Ray start; "from training start" begins after the algorithm is built. Peak memory is the
largest summed RSS of the child's whole process tree (Ray workers included), sampled every 50 ms. Runs
alternate between frameworks seed by seed, so drift in machine load hits all of them alike.

    python bench/bench_offpolicy.py --seeds 3 [--algos sac td3] [--max-steps 30000]
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
from typing import Any

import psutil

HERE = Path(__file__).resolve().parent
RUNNERS = {
    ("sac", "kuberl"): [str(HERE / "runners" / "kuberl_sac.py")],
    ("sac", "sb3"): [str(HERE / "runners" / "sb3_sac.py")],
    ("td3", "kuberl"): [str(HERE / "runners" / "kuberl_td3.py")],
    ("td3", "sb3"): [str(HERE / "runners" / "sb3_td3.py")],
}
THRESHOLDS = {"sac": -200.0, "td3": -250.0}


def tree_rss(proc: psutil.Process) -> int:
    total = 0
    for p in [proc, *proc.children(recursive=True)]:
        with contextlib.suppress(psutil.Error):
            total += p.memory_info().rss
    return total


def run_one(algo: str, framework: str, seed: int, max_steps: int, timeout_s: float) -> dict[str, object]:
    env = {**os.environ, "RAY_USAGE_STATS_ENABLED": "0", "RAY_AUTH_MODE": "disabled", "PYTHONUNBUFFERED": "1"}
    t0 = time.time()
    child = subprocess.Popen(
        [sys.executable, *RUNNERS[(algo, framework)], "--seed", str(seed), "--max-steps", str(max_steps)],
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
        if time.time() - t0 > timeout_s:
            child.kill()
        time.sleep(0.05)
    out = child.stdout.read() if child.stdout else ""
    lines = [line for line in out.splitlines() if line.startswith("{")]
    base: dict[str, object] = {"algo": algo, "framework": framework, "seed": seed, "peak_mb": peak / 2**20}
    if not lines:
        return {**base, "solved": False}
    r = json.loads(lines[-1])
    solved = r["solved"] is not None
    return {
        **base,
        "solved": solved,
        "from_process_s": (r["solved"] - t0) if solved else None,
        "from_train_s": (r["solved"] - r["train_start"]) if solved else None,
        "train_excl_eval_s": (r["solved"] - r["train_start"] - r["eval_s"]) if solved else None,
        "startup_s": r["train_start"] - t0,
        "steps": r["steps"],
        "return": r["ret"],
        "history": r["history"],
    }


def median(xs: list[float | None]) -> float | None:
    vals = [x for x in xs if x is not None]
    return statistics.median(vals) if vals else None


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--seeds", type=int, default=3)
    ap.add_argument("--algos", nargs="+", default=["sac", "td3"], choices=["sac", "td3"])
    ap.add_argument("--max-steps", type=int, default=30_000)
    ap.add_argument(
        "--timeout", type=float, default=900.0, help="seconds per run before it counts as unsolved"
    )
    ap.add_argument("--json", type=Path, help="also write raw runs as JSON")
    args = ap.parse_args()
    runs: list[dict[str, object]] = []
    for seed in range(args.seeds):
        for algo in args.algos:
            for framework in ("kuberl", "sb3"):
                runs.append(run_one(algo, framework, seed, args.max_steps, args.timeout))
                print(json.dumps(runs[-1]), file=sys.stderr, flush=True)
    if args.json:
        args.json.write_text(json.dumps(runs, indent=2))

    def f(x: float | None, spec: str = ".1f") -> str:
        return "—" if x is None else format(x, spec)

    def ratio(a: float | None, b: float | None) -> str:
        return f"{a / b:.1f}×" if a and b else "—"

    print(
        f"Pendulum-v1 to evaluation mean ≥ threshold — {platform.node()}, {psutil.cpu_count()} CPUs, "
        f"{time.strftime('%Y-%m-%d')}, seeds 0..{args.seeds - 1} (medians over solved runs)\n"
    )
    print(
        "| algorithm | framework | solved | from process start (s) | from training start (s) | training excl. "
        "evaluation (s) | env steps | peak RSS (MB) | kuberl speed-up (process / training) |"
    )
    print("|---|---|---|---|---|---|---|---|---|")
    for algo in args.algos:
        summary: dict[str, dict[str, Any]] = {}
        for fw in ("kuberl", "sb3"):
            rs = [r for r in runs if r["algo"] == algo and r["framework"] == fw]
            summary[fw] = {
                "solved": f"{sum(bool(r['solved']) for r in rs)}/{len(rs)}",
                "proc": median([r.get("from_process_s") for r in rs]),  # type: ignore[misc]
                "train": median([r.get("from_train_s") for r in rs]),  # type: ignore[misc]
                "excl": median([r.get("train_excl_eval_s") for r in rs]),  # type: ignore[misc]
                "steps": median([float(r["steps"]) for r in rs if r.get("solved")]),  # type: ignore[arg-type]
                "mem": median([r["peak_mb"] for r in rs]),  # type: ignore[misc]
            }
        base = summary["kuberl"]
        for fw, s in summary.items():
            speed = (
                f"{ratio(s['proc'], base['proc'])} / {ratio(s['excl'], base['excl'])}"
                if fw != "kuberl"
                else "1.0×"
            )
            print(
                f"| {algo.upper()} (≥ {THRESHOLDS[algo]:g}) | {fw} | {s['solved']} | {f(s['proc'])} | {f(s['train'])} "
                f"| {f(s['excl'])} | {f(s['steps'], ',.0f')} | {f(s['mem'], '.0f')} | {speed} |"
            )


if __name__ == "__main__":
    main()
