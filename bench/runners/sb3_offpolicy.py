"""Stable-Baselines3 SAC or TD3 (--algo) on Pendulum-v1 with the rl-baselines3-zoo
hyperparameters, until the deterministic policy's evaluation mean reaches the threshold (one seed).

Zoo hyperparams/sac.yml, Pendulum-v1: n_timesteps 20000, learning_rate 1e-3, SB3 defaults otherwise
(buffer 1e6, learning_starts 100, batch_size 256, tau 0.005, gamma 0.99, train_freq 1, gradient_steps 1,
ent_coef auto, net_arch [256, 256]).
Zoo hyperparams/td3.yml, Pendulum: n_timesteps 20000, gamma 0.98, buffer_size 200000, learning_starts
10000, noise normal σ 0.1, train_freq [1, episode], gradient_steps -1, learning_rate 1e-3,
net_arch [400, 300].
Evaluation is the same as kuberl's runner (offpolicy_eval.py), every 1,000 env steps.
"""

from __future__ import annotations

from common import race_parser  # type: ignore[import-not-found]

ap = race_parser(threshold=None, max_steps=30_000, threshold_help="default: -200 (SAC), -250 (TD3)")
ap.add_argument("--algo", default="sac", choices=["sac", "td3"])
ap.add_argument("--eval-every", type=int, default=1000)
args = ap.parse_args()
threshold = args.threshold if args.threshold is not None else {"sac": -200.0, "td3": -250.0}[args.algo]

import gymnasium as gym  # noqa: E402
import numpy as np  # noqa: E402
import torch  # noqa: E402
from offpolicy_eval import Evaluator  # type: ignore[import-not-found]  # noqa: E402
from sb3_common import learn_and_report  # type: ignore[import-not-found]  # noqa: E402
from stable_baselines3 import SAC, TD3  # noqa: E402
from stable_baselines3.common.noise import NormalActionNoise  # noqa: E402

torch.set_num_threads(1)  # as kuberl's learner on this 2-core machine; SB3 is not faster with more here


env = gym.make("Pendulum-v1")
model: SAC | TD3
if args.algo == "sac":
    model = SAC("MlpPolicy", env, learning_rate=1e-3, seed=args.seed, device="cpu", verbose=0)
else:
    model = TD3(
        "MlpPolicy",
        env,
        gamma=0.98,
        buffer_size=200_000,
        learning_starts=10_000,
        action_noise=NormalActionNoise(mean=np.zeros(1), sigma=0.1 * np.ones(1)),
        train_freq=(1, "episode"),
        gradient_steps=-1,
        learning_rate=1e-3,
        policy_kwargs={"net_arch": [400, 300]},
        seed=args.seed,
        device="cpu",
        verbose=0,
    )
evaluate = Evaluator("Pendulum-v1", seed=args.seed)
learn_and_report(
    model, threshold=threshold, total_timesteps=args.max_steps, evaluate=evaluate, every=args.eval_every
)
