"""The environment's own share of a same-hyperparameter run (bench/bench_same_hparams.py): CPU seconds of
stepping the 16 Acrobot-v1 copies with random actions, in the vector env each framework builds
(kuberl: its env factory's Gymnasium SyncVectorEnv; SB3: `make_vec_env`'s DummyVecEnv with Monitor).
No policy, no learning: this is the floor neither framework can go below, so a framework's speed-up
over another is at most (other's total) / (this floor).

    python bench/bench_env_floor.py --steps 40960 --rounds 3
"""

from __future__ import annotations

import argparse
import os
import time

import numpy as np


def kuberl_env(n: int):  # type: ignore[no-untyped-def]
    from kuberl.core.env_factory import make_vector_env

    return make_vector_env("Acrobot-v1", {}, n)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--steps", type=int, default=40960, help="env steps (all sub-envs together)")
    ap.add_argument("--envs", type=int, default=16)
    ap.add_argument("--rounds", type=int, default=3)
    args = ap.parse_args()
    from stable_baselines3.common.env_util import make_vec_env

    rng = np.random.default_rng(0)
    vector_steps = args.steps // args.envs
    for r in range(args.rounds):  # alternate the two, so load drift hits both
        for name in ("kuberl", "sb3"):
            if name == "kuberl":
                env = kuberl_env(args.envs)
                env.reset(seed=r)
                step = env.step
            else:
                env = make_vec_env("Acrobot-v1", n_envs=args.envs, seed=r)
                env.reset()
                step = env.step
            actions = rng.integers(0, 3, size=(vector_steps, args.envs))
            c0 = time.process_time()
            for t in range(vector_steps):
                step(actions[t])
            cpu = time.process_time() - c0
            env.close()
            print(
                f"round {r} {name}: {cpu:.2f} CPU s per {args.steps} env steps "
                f"({1000 * cpu / args.steps * 1000:.0f} CPU ms per 1k), load {os.getloadavg()[0]:.1f}"
            )


if __name__ == "__main__":
    main()
