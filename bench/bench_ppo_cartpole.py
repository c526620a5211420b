"""Wall-clock time to CartPole-v1 mean return ≥ 475: kuberl PPO vs Stable-Baselines3 (and RLlib).

kuberl runs examples/ppo-job.yaml (in-process sampling, and with two Ray env runners); SB3 uses the
rl-baselines3-zoo hyperparameters (runners/sb3_ppo.py); RLlib its tuned example (runners/rllib_ppo.py).
Method: bench/harness.py.

    python bench/bench_ppo_cartpole.py --seeds 5 [--rllib-seeds 1]
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from harness import run_interleaved, run_one, runner, table

KUBERL = runner("kuberl_example.py", "--example", "ppo-job.yaml")
RUNNERS = {
    "kuberl": KUBERL,
    "sb3": runner("sb3_ppo.py"),
    "kuberl (2 Ray runners)": [*KUBERL, "--env-runners", "2"],
}
RLLIB = runner("rllib_ppo.py")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--seeds", type=int, default=5)
    ap.add_argument("--rllib-seeds", type=int, default=0, help="RLlib takes half a minute or more per seed")
    ap.add_argument(
        "--rllib-default-seeds", type=int, default=0, help="RLlib with its default hyperparameters"
    )
    ap.add_argument("--json", type=Path, help="also write raw runs as JSON")
    args = ap.parse_args()
    runs = run_interleaved(RUNNERS, args.seeds)
    for seed in range(args.rllib_seeds):
        runs.append(run_one("rllib", RLLIB, seed))
        print(json.dumps(runs[-1]), file=sys.stderr, flush=True)
    for seed in range(args.rllib_default_seeds):
        runs.append(run_one("rllib (defaults)", [*RLLIB, "--defaults"], seed))
        print(json.dumps(runs[-1]), file=sys.stderr, flush=True)
    if args.json:
        args.json.write_text(json.dumps(runs, indent=2))
    print(table(runs, title="CartPole-v1 to mean return ≥ 475"))


if __name__ == "__main__":
    main()
