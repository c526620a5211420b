"""A uniformly random policy's episode return on a job's env, measured the way training reports it: the
job's vector env (`make_vector_env`, envsPerRunner sub-envs, the runner's seeds), whole episodes.

    python bench/random_policy_return.py examples/ppo-atari-breakout.yaml --episodes 32
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import yaml

from kuberl.core.env_factory import make_vector_env, seeds_for


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("job")
    parser.add_argument("--episodes", type=int, default=32)
    args = parser.parse_args()
    spec = yaml.safe_load(Path(args.job).read_text())["spec"]
    n = int(spec.get("resources", {}).get("envsPerRunner", 1))
    seed = spec.get("seed")
    env = make_vector_env(spec["env"], spec.get("envConfig", {}), n)
    env.reset(seed=seeds_for(seed, 0, n))
    env.action_space.seed(seed)
    returns: list[float] = []
    running = np.zeros(n)
    while len(returns) < args.episodes:
        _, reward, terminated, truncated, _ = env.step(env.action_space.sample())
        running += reward
        for i in np.flatnonzero(np.logical_or(terminated, truncated)):
            returns.append(float(running[i]))
            running[i] = 0.0
    env.close()
    r = np.array(returns[: args.episodes])
    print(f"{len(r)} episodes: mean {r.mean():.2f}, std {r.std():.2f}, min {r.min():.0f}, max {r.max():.0f}")


if __name__ == "__main__":
    main()
