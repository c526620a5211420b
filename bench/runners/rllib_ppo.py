"""RLlib PPO (new API stack) on CartPole-v1 with RLlib's tuned example settings (one seed).

rllib/tuned_examples/ppo/cartpole_ppo.py: lr 3e-4, num_epochs 6, vf_loss_coeff 0.01, defaults otherwise.
"""

from __future__ import annotations

import argparse
import time

from common import report  # type: ignore[import-not-found]

ap = argparse.ArgumentParser()
ap.add_argument("--seed", type=int, default=0)
ap.add_argument("--threshold", type=float, default=475.0)
ap.add_argument("--max-seconds", type=float, default=900.0)
ap.add_argument(
    "--defaults", action="store_true", help="RLlib's default PPO hyperparameters, not its tuned example"
)
args = ap.parse_args()

import ray  # noqa: E402
from ray.rllib.algorithms.ppo import PPOConfig  # noqa: E402

ray.init(include_dashboard=False, log_to_driver=False)
config = PPOConfig().environment("CartPole-v1").debugging(seed=args.seed)
if not args.defaults:
    config = config.training(lr=0.0003, num_epochs=6, vf_loss_coeff=0.01)
algo = config.build_algo()
t_train = time.time()
ret = None
steps = 0
while time.time() - t_train < args.max_seconds:
    result = algo.train()
    ret = result["env_runners"].get("episode_return_mean")
    steps = int(result.get("num_env_steps_sampled_lifetime", 0))
    if ret is not None and ret >= args.threshold:
        break
t_end = time.time()
solved = ret is not None and ret >= args.threshold
report(train_start=t_train, solved=t_end if solved else None, steps=steps, ret=ret)
algo.stop()
ray.shutdown()
