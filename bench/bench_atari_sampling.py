"""Atari sampling throughput of kuberl's EnvRunner (CNN policy inference) against the raw ALE ceiling.

Both sides build the env exactly as examples/ppo-atari-pong.yaml does (`kuberl.envs:make`:
AtariPreprocessing — noop reset, frame skip 4, 84×84 grayscale — then 4 stacked frames) and vectorise
it the way the runner does (kuberl.core.env_factory.make_vector_env: SyncVectorEnv, same-step reset).

  ceiling  the vector env stepping with random actions: no policy at all, what the emulator and
           preprocessing cost. Any sampler is slower than this.
  kuberl   EnvRunner.sample() with the example's CNN actor-critic (its spec.config.model): one batched forward pass per vector
           step, action sampling, log-probs, values, bootstrap values, episode accounting.

Interleaved in one process (ceiling, kuberl, ceiling, …) so machine load hits both alike; the median
of the repeats is reported, in env steps (agent steps, i.e. 4 emulator frames each) per second of wall
time and per second of this process's CPU time (the fair figure on a shared, loaded machine).

    python bench/bench_atari_sampling.py [--env ALE/Pong-v5] [--envs 8] [--steps 4096] [--repeats 3]
"""

from __future__ import annotations

import argparse
import platform
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import psutil
import torch
import yaml

from kuberl.core.env_factory import make_vector_env
from kuberl.core.env_runner import EnvRunner, RunnerConfig
from kuberl.spec import ModelConfig

ENV = "kuberl.envs:make"
EXAMPLE = Path(__file__).resolve().parents[1] / "examples" / "ppo-atari-pong.yaml"


def example_model() -> ModelConfig:
    """The network the Atari example trains (shared Nature CNN trunk, 512-unit head)."""
    return ModelConfig.model_validate(yaml.safe_load(EXAMPLE.read_text())["spec"]["config"]["model"])


def env_config(env_id: str) -> dict[str, Any]:
    return {"id": env_id, "atari": True, "frameStack": 4}


def timed(run: Callable[[], int]) -> tuple[float, float]:
    """(env steps per wall second, env steps per CPU second of this process) of one call of `run`."""
    w, c = time.perf_counter(), time.process_time()
    n = run()
    return n / (time.perf_counter() - w), n / (time.process_time() - c)


def ceiling(env_id: str, num_envs: int, steps: int) -> tuple[float, float]:
    env = make_vector_env(ENV, env_config(env_id), num_envs)
    env.reset(seed=0)
    env.action_space.seed(0)

    def run() -> int:
        n = 0
        while n < steps:
            env.step(env.action_space.sample())
            n += num_envs
        return n

    try:
        return timed(run)
    finally:
        env.close()


def kuberl_rate(env_id: str, num_envs: int, steps: int) -> tuple[float, float]:
    runner = EnvRunner(
        RunnerConfig(
            env=ENV,
            env_config=env_config(env_id),
            num_envs=num_envs,
            rollout_length=128,
            model=example_model(),
            seed=0,
        )
    )
    runner.sample()  # warm-up: first resets, torch's first conv calls

    def run() -> int:
        n = 0
        while n < steps:
            n += runner.sample().batch.env_steps
        return n

    try:
        return timed(run)
    finally:
        runner.close()


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--env", default="ALE/Pong-v5")
    ap.add_argument("--envs", type=int, nargs="+", default=[8])
    ap.add_argument("--steps", type=int, default=4096)
    ap.add_argument("--repeats", type=int, default=3)
    args = ap.parse_args()
    torch.set_num_threads(1)  # one core, as one env runner gets
    load = psutil.getloadavg()[0]
    print(
        f"Atari sampling, {args.env}, one process, 1 torch thread — {platform.node()}, "
        f"{psutil.cpu_count()} CPUs, load {load:.1f}, {time.strftime('%Y-%m-%d %H:%M')} "
        f"(median of {args.repeats}, {args.steps} steps each)\n"
    )
    print(
        "| sub-envs | ceiling steps/s (wall / CPU) | kuberl steps/s (wall / CPU) "
        "| fraction of ceiling (wall / CPU) |"
    )
    print("|---|---|---|---|")
    for n in args.envs:
        ceil: list[tuple[float, float]] = []
        ours: list[tuple[float, float]] = []
        for _ in range(args.repeats):
            ceil.append(ceiling(args.env, n, args.steps))
            ours.append(kuberl_rate(args.env, n, args.steps))
        cw, cc = (float(np.median([c[i] for c in ceil])) for i in (0, 1))
        kw, kc = (float(np.median([k[i] for k in ours])) for i in (0, 1))
        print(
            f"| {n} | {cw:,.0f} / {cc:,.0f} | {kw:,.0f} / {kc:,.0f} | {kw / cw:.0%} / {kc / cc:.0%} |",
            flush=True,
        )


if __name__ == "__main__":
    main()
