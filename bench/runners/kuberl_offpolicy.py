"""kuberl SAC or TD3 (--algo) on Pendulum-v1 from examples/{sac,td3}-pendulum.yaml until the
deterministic policy's evaluation mean reaches the threshold (one seed)."""

from __future__ import annotations

import time
from pathlib import Path

from common import race_parser, report  # type: ignore[import-not-found]
from offpolicy_eval import Evaluator  # type: ignore[import-not-found]

ap = race_parser(threshold=None, max_steps=30_000, threshold_help="default: -200 (SAC), -250 (TD3)")
ap.add_argument("--algo", default="sac", choices=["sac", "td3"])
ap.add_argument("--env-runners", type=int, default=1)
ap.add_argument("--eval-every", type=int, default=1000)
args = ap.parse_args()
threshold = args.threshold if args.threshold is not None else {"sac": -200.0, "td3": -250.0}[args.algo]

from kuberl.build import build_algorithm  # noqa: E402
from kuberl.spec import apply_overrides, read_document  # noqa: E402

ROOT = Path(__file__).resolve().parents[2]
doc = apply_overrides(
    read_document(ROOT / "examples" / f"{args.algo}-pendulum.yaml"),
    [
        f"seed={args.seed}",
        f"resources.envRunners={args.env_runners}",
        "evaluation.interval=0",
        "runDir=/tmp/kuberl-bench",
    ],
)
algo = build_algorithm(doc)
evaluate = Evaluator("Pendulum-v1", seed=args.seed)
t_train = time.time()
ret = None
next_eval = args.eval_every
while algo.timesteps < args.max_steps:
    algo.train()
    if algo.timesteps >= next_eval:
        next_eval += args.eval_every
        ret = evaluate(algo.timesteps, lambda obs: algo.compute_actions(obs))
        if ret >= threshold:
            break
t_end = time.time()
solved = ret is not None and ret >= threshold
report(
    train_start=t_train,
    solved=t_end if solved else None,
    eval_s=evaluate.seconds,
    steps=algo.timesteps,
    ret=ret,
    history=evaluate.history,
)
algo.stop()
