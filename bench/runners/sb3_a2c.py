"""Stable-Baselines3 A2C on CartPole-v1 with the rl-baselines3-zoo hyperparameters (one seed).

Zoo (hyperparams/a2c.yml, CartPole-v1): n_envs 8, n_timesteps 5e5, policy MlpPolicy, ent_coef 0.0;
everything else is SB3's A2C default: n_steps 5, learning_rate 7e-4, gamma 0.99, gae_lambda 1.0,
vf_coef 0.5, max_grad_norm 0.5, RMSprop (alpha 0.99, eps 1e-5), no advantage normalisation.
Stops when the mean return of the last 100 training episodes reaches the threshold (SB3's
ep_info_buffer, the same 100-episode window kuberl reports).
"""

from __future__ import annotations

from common import race_parser  # type: ignore[import-not-found]

args = race_parser(threshold=475.0, max_steps=500_000).parse_args()

from sb3_common import learn_and_report  # type: ignore[import-not-found]  # noqa: E402
from stable_baselines3 import A2C  # noqa: E402
from stable_baselines3.common.env_util import make_vec_env  # noqa: E402

env = make_vec_env("CartPole-v1", n_envs=8, seed=args.seed)
model = A2C("MlpPolicy", env, ent_coef=0.0, seed=args.seed, device="cpu", verbose=0)
learn_and_report(model, threshold=args.threshold, total_timesteps=args.max_steps)
