"""Wall-clock time to CartPole-v1 return ≥ 400: kuberl DQN vs Stable-Baselines3 DQN
(rl-baselines3-zoo hyperparameters, see runners/sb3_dqn.py).

Two criteria (--criterion):
- eval (default, as the DQN learning test and the zoo's own reports): every 5,000 env steps both
  frameworks' greedy policies play the same 10 evaluation episodes (runners/offpolicy_eval.py); the time
  spent evaluating is reported apart (`train_excl_eval_s`).
- train: the mean of the last 100 training episodes, played epsilon-greedily by both frameworks
  (kuberl's final epsilon 0.02, the zoo's 0.04).
Method: bench/harness.py.

    python bench/bench_dqn.py --seeds 3 [--criterion train] [--ray]
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from harness import run_interleaved, runner, table

KUBERL = runner(
    "kuberl_example.py", "--example", "dqn-cartpole.yaml", "--threshold", "400", "--max-steps", "200000"
)
RUNNERS = {
    "kuberl": KUBERL,
    "sb3": runner("sb3_dqn.py"),
}
RAY = {"kuberl (1 Ray runner)": [*KUBERL, "--env-runners", "1"]}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--seeds", type=int, default=3)
    ap.add_argument("--criterion", choices=["eval", "train"], default="eval")
    ap.add_argument("--eval-every", type=int, default=5000)
    ap.add_argument("--ray", action="store_true", help="also run kuberl with one Ray env runner")
    ap.add_argument("--json", type=Path, help="also write raw runs as JSON")
    args = ap.parse_args()
    extra = ["--eval-every", str(args.eval_every)] if args.criterion == "eval" else []
    runners = {name: [*cmd, *extra] for name, cmd in {**RUNNERS, **(RAY if args.ray else {})}.items()}
    runs = run_interleaved(runners, args.seeds)
    if args.json:
        args.json.write_text(json.dumps(runs, indent=2))
    what = "greedy evaluation mean" if args.criterion == "eval" else "mean training return"
    print(table(runs, title=f"DQN, CartPole-v1 to {what} ≥ 400"))


if __name__ == "__main__":
    main()
