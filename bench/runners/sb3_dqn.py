"""Stable-Baselines3 DQN on CartPole-v1 with the rl-baselines3-zoo hyperparameters (one seed).

Zoo (hyperparams/dqn.yml, CartPole-v1): n_timesteps 5e4, learning_rate 2.3e-3, batch_size 64,
buffer_size 100000, learning_starts 1000, gamma 0.99, target_update_interval 10, train_freq 256,
gradient_steps 128, exploration_fraction 0.16, exploration_final_eps 0.04, net_arch [256, 256].
Stops when the mean return of the last 100 training episodes reaches the threshold (SB3's
ep_info_buffer, the same 100-episode window kuberl reports), or with --eval-every N when the greedy
policy's 10-episode evaluation (offpolicy_eval.py, every N steps) does. The exploration schedule is laid out
over the zoo's 5e4 steps; training may run on past them (epsilon then stays at its final value).
"""

from __future__ import annotations

from common import race_parser  # type: ignore[import-not-found]

ap = race_parser(threshold=400.0, max_steps=200_000)
ap.add_argument("--eval-every", type=int, default=0, help="0: stop on the training mean instead")
args = ap.parse_args()

from offpolicy_eval import Evaluator  # type: ignore[import-not-found]  # noqa: E402
from sb3_common import learn_and_report  # type: ignore[import-not-found]  # noqa: E402
from stable_baselines3 import DQN  # noqa: E402
from stable_baselines3.common.env_util import make_vec_env  # noqa: E402

ZOO_STEPS = 50_000
env = make_vec_env("CartPole-v1", n_envs=1, seed=args.seed)
model = DQN(
    "MlpPolicy",
    env,
    learning_rate=2.3e-3,
    batch_size=64,
    buffer_size=100_000,
    learning_starts=1000,
    gamma=0.99,
    target_update_interval=10,
    train_freq=256,
    gradient_steps=128,
    # exploration_fraction is a fraction of learn()'s total_timesteps: rescale so epsilon reaches its
    # final value after 0.16 × 5e4 = 8000 steps, as in the zoo, even though we allow max_steps.
    exploration_fraction=0.16 * ZOO_STEPS / args.max_steps,
    exploration_final_eps=0.04,
    policy_kwargs={"net_arch": [256, 256]},
    seed=args.seed,
    device="cpu",
    verbose=0,
)
evaluate = Evaluator("CartPole-v1", seed=args.seed) if args.eval_every else None
learn_and_report(
    model, threshold=args.threshold, total_timesteps=args.max_steps, evaluate=evaluate, every=args.eval_every
)
