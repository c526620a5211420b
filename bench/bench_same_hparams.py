"""Same hyperparameters and networks: kuberl vs Stable-Baselines3 on an environment the kuberl examples
were not tuned for (Acrobot-v1), with rl-baselines3-zoo's published settings translated field by field
(bench/jobs/<algo>-acrobot-zoo.yaml states each translation; SB3: runners/sb3_same_hparams.py). Both
sample 16 envs in one process on the CPU; the criterion is the mean return of the last 100 training
episodes ≥ −100. Frameworks alternate seed by seed (bench/harness.py) so load drift hits both alike;
the load average before and after is printed with the table, because this machine is shared.

    python bench/bench_same_hparams.py --algo ppo --seeds 3
    python bench/bench_same_hparams.py --algo a2c --seeds 3
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from harness import run_interleaved, runner, table

JOBS = Path(__file__).resolve().parent / "jobs"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--algo", choices=["ppo", "a2c"], required=True)
    ap.add_argument("--seeds", type=int, default=3)
    ap.add_argument("--threshold", type=float, default=-100.0, help="mean return of the last 100 episodes")
    ap.add_argument("--max-steps", type=int, default=1_000_000)
    ap.add_argument("--json", type=Path, help="also write raw runs as JSON")
    args = ap.parse_args()
    runners = {
        "kuberl": runner("kuberl_example.py", "--job", str(JOBS / f"{args.algo}-acrobot-zoo.yaml")),
        "sb3": runner("sb3_same_hparams.py", "--algo", args.algo),
    }
    load_before = os.getloadavg()
    extra = ["--threshold", str(args.threshold), "--max-steps", str(args.max_steps)]
    runs = run_interleaved(runners, args.seeds, extra=extra)
    load_after = os.getloadavg()
    if args.json:
        args.json.write_text(json.dumps(runs, indent=2))
    title = f"{args.algo.upper()}, Acrobot-v1 to mean return ≥ {args.threshold:g}, same hyperparameters and networks"
    print(table(runs, title=title))
    print(f"\nload average (1/5/15 min) before {load_before}, after {load_after}")
    for r in runs:
        print(f"  {r['framework']} seed {r['seed']}: training {r.get('from_train_s')} s, {r['steps']} steps")


if __name__ == "__main__":
    main()
