"""Ape-X DDPG vs single-runner DDPG on Pendulum-v1: env steps, wall time and CPU time until the
deterministic policy's 10-episode evaluation mean reaches −300 (checked every 1,000 env steps once
learning has started; evaluation time is excluded from "training" time and from env steps/s).

Configurations (each the repository's example, changed only as listed):
  ddpg            examples/ddpg-pendulum.yaml, envRunners 0 (sampling in the driver; one env)
  apex_ddpg       examples/apex-ddpg-pendulum.yaml, envRunners 2 (two Ray env runners × 4 sub-envs)
  apex_ddpg_local examples/apex-ddpg-pendulum.yaml, envRunners 0 (the same 4 sub-envs in the driver)

Every run is a fresh child process; runs alternate configuration by configuration within each seed, so
drift in machine load hits all of them alike. CPU time is the summed user+system time of the child's
whole process tree (Ray daemons and workers included) when the threshold is reached.

    nice -n 19 python bench/bench_apex_ddpg.py --seeds 2
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
CONFIGS = {
    "ddpg": ("ddpg-pendulum.yaml", 0),
    "apex_ddpg": ("apex-ddpg-pendulum.yaml", 2),
    "apex_ddpg_local": ("apex-ddpg-pendulum.yaml", 0),
}
THRESHOLD = -300.0


def tree_cpu() -> float:
    import psutil

    me = psutil.Process()
    total = 0.0
    for p in [me, *me.children(recursive=True)]:
        try:
            t = p.cpu_times()
            total += t.user + t.system
        except psutil.Error:
            continue
    return total


def one(config: str, seed: int, max_steps: int) -> dict[str, Any]:
    """Train one configuration in this process (the child side)."""
    from kuberl.build import build_algorithm
    from kuberl.spec import apply_overrides, parse_job, read_document

    example, runners = CONFIGS[config]
    run_dir = f"/tmp/bench-apex-ddpg-{os.getpid()}"
    doc = apply_overrides(
        read_document(ROOT / "examples" / example),
        [f"seed={seed}", f"runDir={run_dir}", f"resources.envRunners={runners}", "evaluation.interval=0"],
    )
    start = parse_job(doc).spec.config.num_steps_sampled_before_learning_starts
    algo = build_algorithm(doc)
    train_s = 0.0
    best, solved_at, evals = float("-inf"), None, []
    next_eval = start + 1000
    try:
        while algo.timesteps < max_steps and solved_at is None:
            t0 = time.perf_counter()
            algo.train()
            train_s += time.perf_counter() - t0
            if algo.timesteps >= next_eval:
                next_eval = algo.timesteps + 1000
                ret = algo.evaluate(10, explore=False)["episode_return_mean"]
                evals.append((algo.timesteps, round(ret)))
                best = max(best, ret)
                if ret >= THRESHOLD:
                    solved_at = algo.timesteps
        cpu = tree_cpu()
        steps = algo.timesteps
    finally:
        algo.stop()
    return {
        "config": config,
        "seed": seed,
        "solved_at": solved_at,
        "steps": steps,
        "train_s": round(train_s, 1),
        "env_steps_per_s": round(steps / train_s, 1),
        "cpu_s": round(cpu, 1),
        "best": round(best, 1),
        "evaluations": evals,
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--seeds", type=int, default=2)
    ap.add_argument("--configs", nargs="+", default=list(CONFIGS), choices=list(CONFIGS))
    ap.add_argument("--max-steps", type=int, default=30_000)
    ap.add_argument("--one", nargs=2, metavar=("CONFIG", "SEED"), help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.one:
        print(json.dumps(one(args.one[0], int(args.one[1]), args.max_steps)))
        return
    for seed in range(args.seeds):
        for config in args.configs:
            out = subprocess.run(
                [sys.executable, __file__, "--one", config, str(seed), "--max-steps", str(args.max_steps)],
                capture_output=True,
                text=True,
                check=True,
            )
            print(out.stdout.strip().splitlines()[-1], flush=True)


if __name__ == "__main__":
    main()
