"""QMIX, VDN and independent DQN learners on the two-step cooperative game (kuberl.envs:make_two_step_game),
interleaved seed by seed in this process: CPU time (time.process_time, so the machine's load does not
count) for a 6,000-env-step run, CPU steps/s, the env steps and CPU seconds until the greedy team's return
first reaches 16 (evaluated every 500 steps, evaluation time included), and the greedy return at the end.
Independent DQN (bench/jobs/iql-two-step.yaml) is the reference the ratios are taken against.

    nice -n 19 python bench/bench_value_factorization.py --seeds 3
"""

from __future__ import annotations

import argparse
import os
import time
from pathlib import Path
from tempfile import TemporaryDirectory
from typing import Any

from kuberl.build import build_algorithm
from kuberl.spec import apply_overrides, read_document

ROOT = Path(__file__).resolve().parents[1]
JOBS = {
    "QMIX": ROOT / "examples" / "qmix-two-step.yaml",
    "VDN": ROOT / "examples" / "vdn-two-step.yaml",
    "independent DQN": ROOT / "bench" / "jobs" / "iql-two-step.yaml",
}
BUDGET, EVERY, OPTIMAL = 6_000, 500, 16.0


def run(path: Path, seed: int, run_dir: str) -> dict[str, Any]:
    doc = apply_overrides(read_document(path), [f"seed={seed}", f"runDir={run_dir}", "evaluation.interval=0"])
    algo = build_algorithm(doc)
    start = time.process_time()
    first: tuple[int, float] | None = None
    try:
        while algo.timesteps < BUDGET:
            algo.train()
            due = algo.timesteps % EVERY == 0 and first is None
            if due and algo.evaluate(1, explore=False)["episode_return_mean"] >= OPTIMAL:
                first = (algo.timesteps, time.process_time() - start)
        cpu = time.process_time() - start
        final = algo.evaluate(1, explore=False)["episode_return_mean"]
    finally:
        algo.stop()
    return {"cpu_s": cpu, "steps_per_cpu_s": algo.timesteps / cpu, "first_optimal": first, "final": final}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--seeds", type=int, default=3)
    args = parser.parse_args()
    results: dict[str, list[dict[str, Any]]] = {name: [] for name in JOBS}
    with TemporaryDirectory() as tmp:
        for seed in range(args.seeds):
            for name, path in JOBS.items():
                results[name].append(run(path, seed, tmp))
    ref = sum(r["cpu_s"] for r in results["independent DQN"]) / args.seeds
    print(f"load average (1 min) at the end: {os.getloadavg()[0]:.1f}")
    print("| learner | CPU s per 6,000 steps | CPU steps/s | CPU time vs independent DQN | "
          "first greedy return 16 (env steps, CPU s) per seed | greedy return at 6,000 steps |")  # fmt: skip
    print("|---|---|---|---|---|---|")
    for name, rows in results.items():
        cpu = sum(r["cpu_s"] for r in rows) / len(rows)
        rate = sum(r["steps_per_cpu_s"] for r in rows) / len(rows)
        firsts = ", ".join("never" if r["first_optimal"] is None else
                           f"{r['first_optimal'][0]} ({r['first_optimal'][1]:.2f})" for r in rows)  # fmt: skip
        finals = ", ".join(f"{r['final']:g}" for r in rows)
        print(f"| {name} | {cpu:.2f} | {rate:,.0f} | {cpu / ref:.2f}× | {firsts} | {finals} |")


if __name__ == "__main__":
    main()
