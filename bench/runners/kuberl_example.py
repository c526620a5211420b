"""kuberl on one of examples/*.yaml (or any job file, --job) until the mean return of the last 100 training episodes reaches the
threshold (one seed), or with --eval-every N until the greedy policy's 10-episode evaluation
(offpolicy_eval.py, every N env steps) does. Used by bench_ppo_cartpole (ppo-job.yaml), bench_a2c and
bench_dqn."""

from __future__ import annotations

import sys
import time
from pathlib import Path

from common import race_parser, report  # type: ignore[import-not-found]
from offpolicy_eval import Evaluator  # type: ignore[import-not-found]

ap = race_parser(threshold=475.0, max_steps=500_000)
which = ap.add_mutually_exclusive_group(required=True)
which.add_argument("--example", help="file name under examples/, e.g. ppo-job.yaml")
which.add_argument("--job", type=Path, help="a job file by path, e.g. bench/jobs/ppo-acrobot-zoo.yaml")
ap.add_argument("--env-runners", type=int, default=0)
ap.add_argument("--eval-every", type=int, default=0, help="0: stop on the training mean instead")
ap.add_argument("--code", type=Path, help="import kuberl from this trainer_image (e.g. a baseline checkout)")
args = ap.parse_args()
if args.code:  # before the kuberl imports below: a before/after comparison runs two versions of the code
    sys.path.insert(0, str(args.code.resolve()))

from kuberl.build import build_algorithm  # noqa: E402
from kuberl.spec import apply_overrides, read_document  # noqa: E402

ROOT = Path(__file__).resolve().parents[2]
doc = apply_overrides(
    read_document(args.job if args.job else ROOT / "examples" / args.example),
    [
        f"seed={args.seed}",
        f"resources.envRunners={args.env_runners}",
        "runDir=/tmp/kuberl-bench",
        "evaluation.interval=0",  # the bench's own evaluator, identical for every framework, decides
    ],
)
algo = build_algorithm(doc)


def grad_steps(algo: object) -> int | None:
    """Gradient steps so far of a replay algorithm (DQN counts them itself, SAC/TD3 in their learner);
    None for the others. The warm-up (env steps before the first gradient step: random actions for
    SAC/TD3) ends with the last iteration where this is 0; its CPU is reported apart, so learning CPU per
    gradient step is not diluted by the cheaper warm-up steps."""
    for owner in (algo, getattr(algo, "learner", None)):
        n = getattr(owner, "num_updates", None)
        if isinstance(n, int):
            return n
    return None


evaluate = Evaluator(doc["spec"]["env"], seed=args.seed) if args.eval_every else None
next_eval = args.eval_every
t_train = time.time()
cpu_train = time.process_time()
ret = None
warmup: dict[str, float] = {}
while algo.timesteps < args.max_steps:
    ret = algo.train()["episode_return_mean"]
    if grad_steps(algo) == 0:
        warmup = {"warmup_cpu_s": time.process_time() - cpu_train, "warmup_steps": algo.timesteps}
    if evaluate is not None:
        if algo.timesteps < next_eval:
            continue
        next_eval += args.eval_every
        ret = evaluate(algo.timesteps, lambda obs: algo.compute_actions(obs))
    if ret is not None and ret >= args.threshold:
        break
t_end = time.time()
train_cpu_s = time.process_time() - cpu_train
solved = ret is not None and ret >= args.threshold
extra = {"eval_s": evaluate.seconds, "history": evaluate.history} if evaluate is not None else {}
report(
    train_start=t_train,
    solved=t_end if solved else None,
    steps=algo.timesteps,
    ret=ret,
    train_cpu_s=train_cpu_s,
    grad_steps=grad_steps(algo),
    **warmup,
    **extra,
)
algo.stop()
