"""Stable-Baselines3 on Acrobot-v1 with rl-baselines3-zoo's published settings, as translated for the
same-hyperparameter comparison (one seed). The kuberl side is bench/jobs/<algo>-acrobot-zoo.yaml, whose
comments give the field-by-field translation; both sides drop the zoo's `normalize: true` (kuberl has no
reward normalisation) and the A2C side uses Adam (eps 1e-5) instead of SB3's default RMSprop (kuberl has
Adam only). Stops when the mean return of the last 100 training episodes reaches the threshold.
"""

from __future__ import annotations

from common import race_parser  # type: ignore[import-not-found]

ap = race_parser(threshold=-100.0, max_steps=1_000_000)
ap.add_argument("--algo", choices=["ppo", "a2c"], required=True)
args = ap.parse_args()

import torch  # noqa: E402
from sb3_common import learn_and_report  # type: ignore[import-not-found]  # noqa: E402
from stable_baselines3 import A2C, PPO  # noqa: E402
from stable_baselines3.common.env_util import make_vec_env  # noqa: E402

# Separate 64×64 tanh policy and value networks: SB3's MlpPolicy default for both, spelled out.
NET = {"net_arch": {"pi": [64, 64], "vf": [64, 64]}, "activation_fn": torch.nn.Tanh}

env = make_vec_env("Acrobot-v1", n_envs=16, seed=args.seed)
model: PPO | A2C
if args.algo == "ppo":
    model = PPO(
        "MlpPolicy",
        env,
        n_steps=256,
        batch_size=64,
        n_epochs=4,
        gae_lambda=0.94,
        gamma=0.99,
        learning_rate=3e-4,
        clip_range=0.2,
        vf_coef=0.5,
        ent_coef=0.0,
        max_grad_norm=0.5,
        policy_kwargs=NET,
        seed=args.seed,
        device="cpu",
        verbose=0,
    )
else:
    model = A2C(
        "MlpPolicy",
        env,
        n_steps=5,
        learning_rate=7e-4,
        gamma=0.99,
        gae_lambda=1.0,
        vf_coef=0.5,
        ent_coef=0.0,
        max_grad_norm=0.5,
        normalize_advantage=False,
        policy_kwargs={**NET, "optimizer_class": torch.optim.Adam, "optimizer_kwargs": {"eps": 1e-5}},
        seed=args.seed,
        device="cpu",
        verbose=0,
    )
learn_and_report(model, threshold=args.threshold, total_timesteps=args.max_steps)
