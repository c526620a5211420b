"""The cost of Rainbow's heads: process CPU time per env step of kuberl DQN on CartPole-v1 with the plain
(dueling, double-Q) head, C51 and noisy nets, each from its example (same sampling, replay ratio and
network trunk), training in the driver (no Ray) after learning starts. Variants are interleaved round by
round in this one process, so load and thermal drift hit all of them alike; the ratio to plain DQN in
the same round is the figure to quote. CPU time, not wall time: the machine is shared.

    python bench/bench_rainbow.py --rounds 3 --iterations 40
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from kuberl.build import build_algorithm  # noqa: E402
from kuberl.spec import apply_overrides, read_document  # noqa: E402

VARIANTS = {"plain": "dqn-cartpole.yaml", "c51": "dqn-c51-cartpole.yaml", "noisy": "dqn-noisy-cartpole.yaml"}


def cpu_per_step(example: str, iterations: int, run_dir: Path) -> tuple[float, float]:
    """(CPU seconds per env step, env steps per CPU second) over `iterations` after learning starts."""
    doc: dict[str, Any] = apply_overrides(
        read_document(ROOT / "examples" / example),
        ["seed=0", f"runDir={run_dir}", "resources.envRunners=0"],
    )
    algo = build_algorithm(doc)
    try:
        while algo.timesteps < doc["spec"]["config"]["num_steps_sampled_before_learning_starts"] * 2:
            algo.train()
        start_steps, t0 = algo.timesteps, time.process_time()
        for _ in range(iterations):
            algo.train()
        cpu, steps = time.process_time() - t0, algo.timesteps - start_steps
        return cpu / steps, steps / cpu
    finally:
        algo.stop()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--iterations", type=int, default=40)
    args = ap.parse_args()
    ratios: dict[str, list[float]] = {v: [] for v in VARIANTS}
    rates: dict[str, list[float]] = {v: [] for v in VARIANTS}
    for r in range(args.rounds):
        per_step = {}
        for name, example in VARIANTS.items():
            per_step[name], rate = cpu_per_step(
                example, args.iterations, Path(f"/tmp/bench-rainbow/{r}-{name}")
            )
            rates[name].append(rate)
        for name in VARIANTS:
            ratios[name].append(per_step[name] / per_step["plain"])
        print(f"round {r}: " + ", ".join(f"{n} {rates[n][-1]:.0f} steps/CPU-s" for n in VARIANTS), flush=True)
    print("| head | env steps per CPU second (median) | CPU per step vs plain (median, per round) |")
    print("|---|---|---|")
    for name in VARIANTS:
        per_round = ", ".join(f"{x:.2f}" for x in ratios[name])
        print(
            f"| {name} | {statistics.median(rates[name]):.0f} | {statistics.median(ratios[name]):.2f}× ({per_round}) |"
        )


if __name__ == "__main__":
    main()
