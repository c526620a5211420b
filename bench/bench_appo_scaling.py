"""APPO throughput against the number of env runners, and the scaling efficiency.

End-to-end: the full asynchronous APPO loop (runners sampling, fragments shipped through Ray's
object store, the learner training on them in the driver, weights broadcast back), measured as
environment steps sampled per second of wall-clock time after a warm-up. Scaling efficiency is
steps/s ÷ (runners × the single-runner steps/s): 100% is linear scaling.

    python bench/bench_appo_scaling.py [--runners 1 2 4] [--seconds 20] [--gpu]

Runner counts above the core count oversubscribe the machine (shown on purpose). With --gpu the
learner trains on the GPU (`gpusPerLearner: 1`, device chosen by kuberl.core.learner.select_device).
"""

from __future__ import annotations

import argparse
import os
import platform
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

from kuberl.build import build_algorithm
from kuberl.core.ray_init import ensure_ray
from kuberl.spec import apply_overrides, read_document

ROOT = Path(__file__).resolve().parents[1]


def measure(
    runners: int,
    *,
    seconds: float,
    warmup_s: float,
    gpu: bool,
    extra: list[str],
    example: str = "appo-cartpole.yaml",
) -> dict[str, float]:
    """Env and trained steps/s and the policy lag of `runners` env runners on examples/`example` (an
    asynchronous job: APPO or IMPALA), over `seconds` after `warmup_s` of training."""
    overrides = [
        f"resources.envRunners={runners}",
        # Runner actors even for one runner: the row measures the actor path the scaling is about.
        "resources.localMode=actors",
        f"resources.gpusPerLearner={1 if gpu else 0}",
        f"runDir={tempfile.mkdtemp(prefix='bench-appo-')}",
        "config.min_sample_timesteps_per_iteration=2000",
        *extra,
    ]
    doc = apply_overrides(read_document(ROOT / "examples" / example), overrides)
    algo = build_algorithm(doc)
    try:
        start = time.perf_counter()
        while time.perf_counter() - start < warmup_s:
            algo.train()
        t0, s0, tr0 = time.perf_counter(), algo.timesteps, algo.timesteps_trained
        lags: list[float] = []
        lag_max = 0.0
        while time.perf_counter() - t0 < seconds:
            stats = algo.train()["learner"]["default_policy"]
            lags.append(stats["policy_lag_mean"])
            lag_max = max(lag_max, stats["policy_lag_max"])
        dt = time.perf_counter() - t0
        return {
            "steps_per_s": (algo.timesteps - s0) / dt,
            "trained_per_s": (algo.timesteps_trained - tr0) / dt,
            "lag_mean": float(np.mean(lags)),
            "lag_max": lag_max,
        }
    finally:
        algo.stop()


def learner_ceiling(*, seconds: float, gpu: bool, example: str = "appo-cartpole.yaml") -> dict[str, float]:
    """Steps/s of the example's learner alone: `learner.update` on synthetic train batches of the
    example's shape ([rollout_fragment_length, train_batch_size / rollout_fragment_length]), no env
    runners, over `seconds` (one update at least) after two warm-up updates. Env runners can add
    throughput only up to this figure: a scaling table is read against it."""
    import gymnasium as gym

    from kuberl.algorithms.registry import algorithm_class
    from kuberl.core.learner import select_device
    from kuberl.core.models import action_distribution, build_model
    from kuberl.core.sample_batch import Columns, SampleBatch
    from kuberl.spec import parse_job

    job = parse_job(read_document(ROOT / "examples" / example))
    cfg: Any = job.spec.config
    env = gym.make(job.spec.env)
    T = cfg.rollout_fragment_length
    n = max(1, cfg.train_batch_size // T)
    rng = np.random.default_rng(0)
    obs = rng.normal(size=(T, n, *env.observation_space.shape)).astype(np.float32)
    batch = SampleBatch(
        {
            Columns.OBS: obs,
            Columns.NEXT_OBS: obs + np.float32(0.01),
            Columns.ACTIONS: np.stack([[env.action_space.sample() for _ in range(n)] for _ in range(T)]),
            Columns.REWARDS: np.ones((T, n), np.float32),
            Columns.TERMINATEDS: rng.random((T, n)) < 0.02,
            Columns.TRUNCATEDS: np.zeros((T, n), bool),
            Columns.ACTION_LOGP: np.full((T, n), -0.69, np.float32),
        }
    )
    env.close()
    algo_class: Any = algorithm_class(job.spec.algorithm)  # an AsyncVTraceAlgorithm: it names its learner
    learner_class = algo_class.learner_class
    device = select_device(1 if gpu else 0, cpus_per_learner=job.spec.resources.cpus_per_learner)
    module = build_model(env.observation_space, env.action_space, cfg.model)
    learner = learner_class(module, action_distribution(env.action_space), cfg, device)
    generator = torch.Generator().manual_seed(0)
    for _ in range(2):
        learner.update(batch, timesteps=0, generator=generator)
    updates = 0
    t0 = time.perf_counter()
    while updates == 0 or time.perf_counter() - t0 < seconds:
        learner.update(batch, timesteps=0, generator=generator)  # returns floats: synced with the device
        updates += 1
    dt = time.perf_counter() - t0
    return {"updates": updates, "seconds": dt, "steps_per_s": updates * T * n / dt}


def main() -> None:
    cores = os.cpu_count() or 1
    default_runners = sorted({2**i for i in range(cores.bit_length()) if 2**i <= cores} | {2 * cores})
    ap = argparse.ArgumentParser()
    ap.add_argument("--runners", type=int, nargs="+", default=default_runners)
    ap.add_argument("--seconds", type=float, default=20.0)
    ap.add_argument("--warmup", type=float, default=5.0)
    ap.add_argument("--gpu", action="store_true", help="learner on the GPU")
    ap.add_argument("--set", nargs="*", default=[], help="extra KEY=VALUE overrides of the example job")
    args = ap.parse_args()
    ensure_ray(max(args.runners))
    print(
        f"APPO CartPole-v1 (examples/appo-cartpole.yaml, 8 sub-envs per runner), learner on "
        f"{'GPU' if args.gpu else 'CPU'} — {platform.node()}, {cores} CPUs, {time.strftime('%Y-%m-%d')}; "
        f"{args.seconds:.0f} s per row after {args.warmup:.0f} s warm-up\n"
    )
    print(
        "| env runners | env steps/s | trained steps/s | scaling efficiency | policy lag mean | policy lag max |"
    )
    print("|---|---|---|---|---|---|")
    single: float | None = None
    for n in args.runners:
        m = measure(n, seconds=args.seconds, warmup_s=args.warmup, gpu=args.gpu, extra=args.set)
        if single is None and n == 1:
            single = m["steps_per_s"]
        eff = f"{m['steps_per_s'] / (n * single):.0%}" if single else "n/a"
        note = " (oversubscribed)" if n > cores else ""
        print(
            f"| {n}{note} | {m['steps_per_s']:,.0f} | {m['trained_per_s']:,.0f} | {eff} | "
            f"{m['lag_mean']:.1f} | {m['lag_max']:.0f} |",
            flush=True,
        )


if __name__ == "__main__":
    main()
