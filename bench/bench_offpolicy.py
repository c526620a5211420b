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
import json
import platform
import sys
import time
from pathlib import Path
from typing import Any

import psutil

sys.path.insert(0, str(Path(__file__).resolve().parent))
from harness import fmt, median, ratio, run_one, runner

RUNNERS = {
    (algo, fw): runner(f"{fw}_offpolicy.py", "--algo", algo)
    for algo in ("sac", "td3")
    for fw in ("kuberl", "sb3")
}
THRESHOLDS = {"sac": -200.0, "td3": -250.0}


def run(algo: str, framework: str, seed: int, max_steps: int, timeout_s: float) -> dict[str, Any]:
    argv = RUNNERS[(algo, framework)]
    r = run_one(framework, argv, seed, extra=["--max-steps", str(max_steps)], timeout_s=timeout_s)
    return {**r, "algo": algo}


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
    runs: list[dict[str, Any]] = []
    for seed in range(args.seeds):
        for algo in args.algos:
            for framework in ("kuberl", "sb3"):
                runs.append(run(algo, framework, seed, args.max_steps, args.timeout))
                print(json.dumps(runs[-1]), file=sys.stderr, flush=True)
    if args.json:
        args.json.write_text(json.dumps(runs, indent=2))

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
                "proc": median([r.get("from_process_s") for r in rs]),
                "train": median([r.get("from_train_s") for r in rs]),
                "excl": median([r.get("train_excl_eval_s") for r in rs]),
                "steps": median([float(r["steps"]) for r in rs if r.get("solved")]),
                "mem": median([r["peak_mb"] for r in rs]),
            }
        base = summary["kuberl"]
        for fw, s in summary.items():
            speed = (
                f"{ratio(s['proc'], base['proc'])} / {ratio(s['excl'], base['excl'])}"
                if fw != "kuberl"
                else "1.0×"
            )
            print(
                f"| {algo.upper()} (≥ {THRESHOLDS[algo]:g}) | {fw} | {s['solved']} | {fmt(s['proc'])} | {fmt(s['train'])} "
                f"| {fmt(s['excl'])} | {fmt(s['steps'], ',.0f')} | {fmt(s['mem'], '.0f')} | {speed} |"
            )


if __name__ == "__main__":
    main()
