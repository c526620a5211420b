"""EnvRunner sampling throughput as a fraction of the raw ceiling.

Ceiling: the same Gymnasium vector env (SyncVectorEnv, same number of sub-envs) stepping with
random actions plus one batched forward pass of the same network per step: what any sampler must
at least pay. kuberl: EnvRunner.sample() with the full policy (sampling, log-probs, values,
bootstrap values, episode accounting, crash-restart wrappers). Same process, same run, interleaved.

    python bench/bench_sampling.py [--envs 8 16 32] [--steps 100000]
"""

from __future__ import annotations

import argparse
import platform
import time

import gymnasium as gym
import numpy as np
import psutil
import torch

from kuberl.core.env_runner import EnvRunner, RunnerConfig
from kuberl.core.models import ActorCritic
from kuberl.spec import ModelConfig


def ceiling(env_id: str, num_envs: int, steps: int) -> float:
    env = gym.make_vec(env_id, num_envs=num_envs, vectorization_mode="sync")
    obs, _ = env.reset(seed=0)
    net = ActorCritic(env.single_observation_space, env.single_action_space, ModelConfig())
    n = 0
    t = time.perf_counter()
    while n < steps:
        with torch.inference_mode():
            net(torch.as_tensor(obs, dtype=torch.float32))
        obs, *_ = env.step(env.action_space.sample())
        n += num_envs
    rate = n / (time.perf_counter() - t)
    env.close()
    return rate


def kuberl_rate(env_id: str, num_envs: int, steps: int) -> float:
    length = 256
    runner = EnvRunner(
        RunnerConfig(
            env=env_id, env_config={}, num_envs=num_envs, rollout_length=length, model=ModelConfig(), seed=0
        )
    )
    runner.sample()  # warm-up
    n = 0
    t = time.perf_counter()
    while n < steps:
        n += runner.sample().batch.env_steps
    rate = n / (time.perf_counter() - t)
    runner.close()
    return rate


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--env", nargs="+", default=["CartPole-v1", "Pendulum-v1"])
    ap.add_argument("--envs", type=int, nargs="+", default=[8, 16, 32])
    ap.add_argument("--steps", type=int, default=100_000)
    ap.add_argument("--repeats", type=int, default=3)
    args = ap.parse_args()
    torch.set_num_threads(1)
    print(
        f"Sampling throughput, one process, 1 torch thread — {platform.node()}, {psutil.cpu_count()} CPUs, "
        f"{time.strftime('%Y-%m-%d')} (median of {args.repeats})\n"
    )
    print("| env | sub-envs | ceiling (steps/s) | kuberl EnvRunner (steps/s) | fraction of ceiling |")
    print("|---|---|---|---|---|")
    for env_id in args.env:
        for n in args.envs:
            ceil, ours = [], []
            for _ in range(args.repeats):
                ceil.append(ceiling(env_id, n, args.steps))
                ours.append(kuberl_rate(env_id, n, args.steps))
            c, k = float(np.median(ceil)), float(np.median(ours))
            print(f"| {env_id} | {n} | {c:,.0f} | {k:,.0f} | {k / c:.0%} |", flush=True)


if __name__ == "__main__":
    main()
