"""Stable-Baselines3 PPO on CartPole-v1 with the rl-baselines3-zoo hyperparameters (one seed).

Zoo (hyperparams/ppo.yml, CartPole-v1): n_envs 8, n_steps 32, batch_size 256, gae_lambda 0.8,
gamma 0.98, n_epochs 20, ent_coef 0.0, learning_rate lin_0.001, clip_range lin_0.2, n_timesteps 1e5.
Stops when the mean return of the last 100 training episodes reaches the threshold (SB3's
ep_info_buffer, the same 100-episode window kuberl reports).
"""

from __future__ import annotations

from common import race_parser  # type: ignore[import-not-found]

args = race_parser(threshold=475.0, max_steps=500_000).parse_args()

from sb3_common import learn_and_report  # type: ignore[import-not-found]  # noqa: E402
from stable_baselines3 import PPO  # noqa: E402
from stable_baselines3.common.env_util import make_vec_env  # noqa: E402


def linear(start: float):  # type: ignore[no-untyped-def]
    return lambda progress: progress * start


env = make_vec_env("CartPole-v1", n_envs=8, seed=args.seed)
model = PPO(
    "MlpPolicy",
    env,
    n_steps=32,
    batch_size=256,
    gae_lambda=0.8,
    gamma=0.98,
    n_epochs=20,
    ent_coef=0.0,
    learning_rate=linear(0.001),
    clip_range=linear(0.2),
    seed=args.seed,
    device="cpu",
    verbose=0,
)
# The zoo trains 1e5 steps; the linear schedules anneal over that same horizon.
learn_and_report(model, threshold=args.threshold, total_timesteps=100_000)
