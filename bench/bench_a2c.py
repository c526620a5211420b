"""Wall-clock time to CartPole-v1 mean return ≥ 475: kuberl A2C vs Stable-Baselines3 A2C.

kuberl runs examples/a2c-cartpole.yaml (in-process sampling; `--ray` adds a run with one Ray env
runner); SB3 uses the rl-baselines3-zoo hyperparameters (runners/sb3_a2c.py). RLlib no longer ships
A2C, so it is not in this race. Method: bench/harness.py.

    python bench/bench_a2c.py --seeds 5 [--threshold 475] [--ray]
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from harness import run_interleaved, runner, table

KUBERL = runner("kuberl_example.py", "--example", "a2c-cartpole.yaml")
RUNNERS = {
    "kuberl": KUBERL,
    "sb3": runner("sb3_a2c.py"),
}
RAY = {"kuberl (1 Ray runner)": [*KUBERL, "--env-runners", "1"]}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--seeds", type=int, default=5)
    ap.add_argument("--threshold", type=float, default=475.0, help="mean return of the last 100 episodes")
    ap.add_argument("--ray", action="store_true", help="also run kuberl with one Ray env runner")
    ap.add_argument("--json", type=Path, help="also write raw runs as JSON")
    args = ap.parse_args()
    runners = {**RUNNERS, **(RAY if args.ray else {})}
    runs = run_interleaved(runners, args.seeds, extra=["--threshold", str(args.threshold)])
    if args.json:
        args.json.write_text(json.dumps(runs, indent=2))
    print(table(runs, title=f"A2C, CartPole-v1 to mean return ≥ {args.threshold:g}"))


if __name__ == "__main__":
    main()
