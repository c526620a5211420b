"""kuberl on one of examples/*.yaml until the mean return of the last 100 training episodes reaches the
threshold (one seed). Used by bench_ppo_cartpole (ppo-job.yaml), bench_a2c and bench_dqn."""

from __future__ import annotations

import argparse
import time
from pathlib import Path

from common import report  # type: ignore[import-not-found]

ap = argparse.ArgumentParser()
ap.add_argument("--example", required=True, help="file name under examples/, e.g. ppo-job.yaml")
ap.add_argument("--seed", type=int, default=0)
ap.add_argument("--env-runners", type=int, default=0)
ap.add_argument("--threshold", type=float, default=475.0)
ap.add_argument("--max-steps", type=int, default=500_000)
args = ap.parse_args()

from kuberl.algorithm import build_algorithm  # noqa: E402
from kuberl.spec import apply_overrides, read_document  # noqa: E402

ROOT = Path(__file__).resolve().parents[2]
doc = apply_overrides(
    read_document(ROOT / "examples" / args.example),
    [f"seed={args.seed}", f"resources.envRunners={args.env_runners}", "runDir=/tmp/kuberl-bench"],
)
algo = build_algorithm(doc)
t_train = time.time()
ret = None
while algo.timesteps < args.max_steps:
    ret = algo.train()["episode_return_mean"]
    if ret is not None and ret >= args.threshold:
        break
t_end = time.time()
solved = ret is not None and ret >= args.threshold
report(train_start=t_train, solved=t_end if solved else None, steps=algo.timesteps, ret=ret)
algo.stop()
