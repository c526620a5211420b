"""Same hyperparameters and networks: kuberl vs Stable-Baselines3 on environments the kuberl examples
were not tuned for, with rl-baselines3-zoo's published settings translated field by field
(bench/jobs/<algo>-<env>-zoo.yaml states each translation; SB3: runners/sb3_same_hparams.py): PPO, A2C
(16 envs) and DQN (1 env) on Acrobot-v1, SAC and TD3 on Hopper-v5 (the zoo's MuJoCo defaults; needs
`mujoco`), all sampled in one process on the CPU. The criterion is the mean return of the last 100
training episodes (Acrobot ≥ −100, Hopper ≥ 3000). Frameworks alternate seed by seed (bench/harness.py) so
load drift hits both alike; the load average before and after is printed with the table, because this
machine is shared.

    python bench/bench_same_hparams.py --algo ppo --seeds 3
    python bench/bench_same_hparams.py --algo a2c --seeds 3
    python bench/bench_same_hparams.py --algo ppo --seeds 2 --budget-steps 40960 --threads 1
    python bench/bench_same_hparams.py --algo sac --seeds 2 --budget-steps 12000 --threads 1 \\
        --baseline-code /tmp/kuberl-main/trainer_image

--baseline-code DIR adds a third runner, kuberl imported from another checkout's trainer_image (e.g. main
before a change), interleaved with the other two: before/after figures from the same run.

--budget-steps N trains exactly N env steps (no threshold) and compares the CPU seconds of the training
loops, which a loaded machine distorts far less than wall time; --threads 1 gives both frameworks one
torch/OpenMP thread (kuberl's CPU learner uses one anyway; SB3 otherwise takes one per core, whose
threads spin against each other on a contended machine).
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
# algorithm → (environment of its job file, bench/jobs/<algo>-<env>-zoo.yaml; default threshold)
SETTINGS = {
    "ppo": ("Acrobot-v1", -100.0),
    "a2c": ("Acrobot-v1", -100.0),
    "dqn": ("Acrobot-v1", -100.0),
    "sac": ("Hopper-v5", 3000.0),
    "td3": ("Hopper-v5", 3000.0),
}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--algo", choices=sorted(SETTINGS), required=True)
    ap.add_argument("--seeds", type=int, default=3)
    ap.add_argument("--threshold", type=float, help="mean return of the last 100 episodes (default: per env)")
    ap.add_argument("--max-steps", type=int, default=1_000_000)
    ap.add_argument("--budget-steps", type=int, help="train exactly this many env steps, no threshold")
    ap.add_argument("--threads", type=int, help="OMP_NUM_THREADS/MKL_NUM_THREADS for both frameworks")
    ap.add_argument("--json", type=Path, help="also write raw runs as JSON")
    ap.add_argument("--baseline-code", type=Path, help="also run kuberl from this trainer_image directory")
    args = ap.parse_args()
    env_id, default_threshold = SETTINGS[args.algo]
    if args.threshold is None:
        args.threshold = default_threshold
    if args.threads:  # the children inherit the environment; torch reads these at start-up
        os.environ["OMP_NUM_THREADS"] = os.environ["MKL_NUM_THREADS"] = str(args.threads)
    if args.budget_steps:
        args.threshold, args.max_steps = float("inf"), args.budget_steps
    job = str(JOBS / f"{args.algo}-{env_id.split('-')[0].lower()}-zoo.yaml")
    runners = {"kuberl": runner("kuberl_example.py", "--job", job)}
    if args.baseline_code:
        runners["kuberl-baseline"] = runner(
            "kuberl_example.py", "--job", job, "--code", str(args.baseline_code)
        )
    runners["sb3"] = runner("sb3_same_hparams.py", "--algo", args.algo)
    load_before = os.getloadavg()
    extra = ["--threshold", str(args.threshold), "--max-steps", str(args.max_steps)]
    runs = run_interleaved(runners, args.seeds, extra=extra)
    load_after = os.getloadavg()
    if args.json:
        args.json.write_text(json.dumps(runs, indent=2))
    title = f"{args.algo.upper()}, {env_id} to mean return ≥ {args.threshold:g}, same hyperparameters and networks"
    print(table(runs, title=title))
    print(f"\nload average (1/5/15 min) before {load_before}, after {load_after}")
    for r in runs:
        cpu = r.get("train_cpu_s")
        per_k = f"{1000 * cpu / r['steps']:.3f} CPU s per 1k steps" if cpu and r["steps"] else ""
        print(
            f"  {r['framework']} seed {r['seed']}: solved {r['solved']}, {r['steps']} steps, "
            f"training CPU {cpu} s {per_k}, process CPU {r.get('cpu_s')} s, process wall "
            f"{r.get('from_process_s')} s"
        )


if __name__ == "__main__":
    main()
