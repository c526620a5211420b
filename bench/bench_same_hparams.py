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

Besides the time-to-threshold table it prints training CPU by phase: per env step of the warm-up (the
steps before the first gradient step: SAC/TD3's 10,000 random steps), and in the learning phase per
gradient step and per env step, for every framework; a run with random warm-up mixes a cheap phase with
an expensive one, so its total CPU alone does not compare the learners.

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
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
from harness import fmt, median, run_interleaved, runner, table

JOBS = Path(__file__).resolve().parent / "jobs"
# algorithm → (environment of its job file, bench/jobs/<algo>-<env>-zoo.yaml; default threshold)
SETTINGS = {
    "ppo": ("Acrobot-v1", -100.0),
    "a2c": ("Acrobot-v1", -100.0),
    "dqn": ("Acrobot-v1", -100.0),
    "sac": ("Hopper-v5", 3000.0),
    "td3": ("Hopper-v5", 3000.0),
}


def phases(r: dict[str, Any]) -> dict[str, float | None]:
    """One run's training CPU split at the first gradient step: milliseconds per warm-up env step, and in
    the learning phase per gradient step and per env step (None where a run has no such phase)."""
    cpu, steps, grads = r.get("train_cpu_s"), r.get("steps"), r.get("grad_steps")
    if cpu is None or not steps:
        return {"warmup": None, "per_grad": None, "per_step": None}
    w_cpu, w_steps = r.get("warmup_cpu_s", 0.0), r.get("warmup_steps", 0)
    learn_cpu, learn_steps = cpu - w_cpu, steps - w_steps
    return {
        "warmup": 1000 * w_cpu / w_steps if w_steps else None,
        "per_grad": 1000 * learn_cpu / grads if grads else None,
        "per_step": 1000 * learn_cpu / learn_steps if learn_steps else None,
    }


def phase_table(runs: list[dict[str, Any]]) -> str:
    """Training CPU by phase, medians per framework, and kuberl's speed-up (other / kuberl) in each."""
    names = list(dict.fromkeys(r["framework"] for r in runs))
    med = {n: {k: median([phases(r)[k] for r in runs if r["framework"] == n]) for k in PHASES} for n in names}
    lines = [
        "| framework | warm-up CPU ms per env step | learning CPU ms per gradient step "
        "| learning CPU ms per env step | kuberl speed-up (warm-up / per gradient step) |",
        "|---|---|---|---|---|",
    ]
    for n in names:
        m, k = med[n], med.get("kuberl", {})
        lines.append(
            f"| {n} | {fmt(m['warmup'], '.2f')} | {fmt(m['per_grad'], '.2f')} | {fmt(m['per_step'], '.2f')} "
            f"| {ratio2(m['warmup'], k.get('warmup'))} / {ratio2(m['per_grad'], k.get('per_grad'))} |"
        )
    return "\n".join(lines)


PHASES = ("warmup", "per_grad", "per_step")


def ratio2(a: float | None, b: float | None) -> str:
    """`a / b` to two decimals: the per-phase ratios sit near 1, where harness.ratio's one decimal blurs."""
    return f"{a / b:.2f}×" if a and b else "—"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--algo", choices=sorted(SETTINGS), required=True)
    ap.add_argument("--seeds", type=int, default=3)
    ap.add_argument("--first-seed", type=int, default=0, help="seeds first-seed … first-seed + seeds - 1")
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
    runs = run_interleaved(runners, args.seeds, extra=extra, first_seed=args.first_seed)
    load_after = os.getloadavg()
    if args.json:
        args.json.write_text(json.dumps(runs, indent=2))
    title = f"{args.algo.upper()}, {env_id} to mean return ≥ {args.threshold:g}, same hyperparameters and networks"
    print(table(runs, title=title))
    print(f"\nload average (1/5/15 min) before {load_before}, after {load_after}")
    print("\n" + phase_table(runs))
    for r in runs:
        cpu = r.get("train_cpu_s")
        per_k = f"{1000 * cpu / r['steps']:.3f} CPU s per 1k steps" if cpu and r["steps"] else ""
        print(
            f"  {r['framework']} seed {r['seed']}: solved {r['solved']}, {r['steps']} steps, "
            f"training CPU {cpu} s {per_k}, process CPU {r.get('cpu_s')} s, process wall "
            f"{r.get('from_process_s')} s; warm-up {r.get('warmup_steps', 0)} steps in "
            f"{r.get('warmup_cpu_s', 0.0)} CPU s, {r.get('grad_steps')} gradient steps, return {r.get('return')}"
        )


if __name__ == "__main__":
    main()
