"""The GPU readiness check behind bench/gpu_check.sh (run that, not this): every figure a GPU machine is
lent for, in one process and under ten minutes on one GPU and 16 cores, written to $OUT as
gpu_check.json (machine-readable, rewritten after every stage so a run cut short keeps what it measured)
and gpu_check.md (the tables bench/RESULTS.md takes).

Stages:
  ppo_atari       PPO with its learner on the GPU on ALE/Pong-v5 (Atari preprocessing, 4 stacked frames,
                  the CNN encoder): env steps/s, learner time per iteration, peak GPU memory.
  offpolicy       SAC and TD3 gradient updates per second (256×256 networks, batch 256) on the GPU and on
                  the CPU, through the algorithm's own replay step (replay sampling and copies included).
  async_scaling   APPO and IMPALA throughput with 1, 2, 4, 8 and 15 env runners, learner on the GPU:
                  env steps/s and scaling efficiency (bench/bench_appo_scaling.py's measure()), and the
                  learner's own ceiling (its updates on synthetic batches, no runners: learner_ceiling()).
  nccl_ddp        PPO on two data-parallel learners, one GPU each (torch DDP over nccl); skipped, with the
                  reason recorded, where fewer than two GPUs are visible.

--cpu puts every learner on the CPU (no CUDA needed); without it a missing CUDA is an error (exit 1).
--smoke makes every stage tiny (seconds), which is what CI runs with --cpu so this script cannot rot.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import tempfile
import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psutil
import torch

from kuberl.build import build_algorithm
from kuberl.core.ray_init import ensure_ray

# bench/ holds scripts, not a package: its sibling is imported from this directory.
sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_appo_scaling import learner_ceiling
from bench_appo_scaling import measure as measure_async

SCHEMA = 1
STAGES = ("ppo_atari", "offpolicy", "async_scaling", "nccl_ddp")


@dataclass(frozen=True)
class Sizes:
    """How big each stage runs: the GPU-machine sizes, or --smoke's."""

    atari_runners: int
    atari_envs: int
    atari_batch: int
    atari_minibatch: int
    atari_epochs: int
    atari_seconds: float
    offpolicy_hidden: int
    offpolicy_batch: int
    offpolicy_learning_starts: int
    offpolicy_seconds: float
    async_runners: tuple[int, ...]
    async_seconds: float
    async_warmup_s: float
    ddp_iterations: int


FULL = Sizes(
    # CleanRL's Atari PPO batch shape (128 steps × 64 envs here, 4 epochs), spread over 8 runners.
    atari_runners=8,
    atari_envs=8,
    atari_batch=8192,
    atari_minibatch=256,
    atari_epochs=4,
    atari_seconds=75.0,
    offpolicy_hidden=256,
    offpolicy_batch=256,
    offpolicy_learning_starts=1000,
    offpolicy_seconds=12.0,
    async_runners=(1, 2, 4, 8, 15),
    async_seconds=10.0,
    async_warmup_s=3.0,
    ddp_iterations=5,
)
SMOKE = Sizes(
    atari_runners=0,
    atari_envs=2,
    atari_batch=64,
    atari_minibatch=32,
    atari_epochs=1,
    atari_seconds=0.0,
    offpolicy_hidden=32,
    offpolicy_batch=32,
    offpolicy_learning_starts=64,
    offpolicy_seconds=0.0,
    async_runners=(1, 2),
    async_seconds=0.5,
    async_warmup_s=0.0,
    ddp_iterations=1,
)


def job(name: str, algorithm: str, env: str, spec: dict[str, Any]) -> dict[str, Any]:
    """An RLTrainingJob document (run directory in a temp folder, so a bench run leaves nothing behind)."""
    return {
        "apiVersion": "kuberl.io/v1alpha1",
        "kind": "RLTrainingJob",
        "metadata": {"name": name},
        "spec": {
            "algorithm": algorithm,
            "env": env,
            "seed": 0,
            "runDir": tempfile.mkdtemp(prefix=f"gpucheck-{name}-"),
            **spec,
        },
    }


def gpu_memory_mb() -> dict[str, float | None]:
    """Peak GPU memory of this process since the last reset (allocated by tensors, reserved by torch's
    caching allocator); null on CPU."""
    if not torch.cuda.is_available():
        return {"gpu_mem_peak_allocated_mb": None, "gpu_mem_peak_reserved_mb": None}
    return {
        "gpu_mem_peak_allocated_mb": torch.cuda.max_memory_allocated() / 2**20,
        "gpu_mem_peak_reserved_mb": torch.cuda.max_memory_reserved() / 2**20,
    }


def start_ray(sizes: Sizes) -> None:
    """Ray with CPUs for the largest runner count any stage asks for (more than the cores oversubscribe
    rather than wait). Started by the stages that need it, so a Ray that fails to start is recorded as
    that stage's failure in the report; the in-driver stages of --smoke need no Ray."""
    ensure_ray(max(*sizes.async_runners, sizes.atari_runners))


def reset_gpu_peak() -> None:
    if torch.cuda.is_available():
        torch.cuda.reset_peak_memory_stats()


# -- stages -------------------------------------------------------------------------------------------


def stage_ppo_atari(sizes: Sizes, gpu: bool) -> dict[str, Any]:
    doc = job(
        "ppo-atari",
        "PPO",
        "kuberl.envs:make",
        {
            "envConfig": {"id": "ALE/Pong-v5", "atari": True, "frameStack": 4},
            "config": {
                "train_batch_size": sizes.atari_batch,
                "minibatch_size": sizes.atari_minibatch,
                "num_epochs": sizes.atari_epochs,
                "lr": 2.5e-4,
                "entropy_coeff": 0.01,
                "grad_clip": 0.5,
            },
            "resources": {
                "envRunners": sizes.atari_runners,
                "envsPerRunner": sizes.atari_envs,
                "gpusPerLearner": 1 if gpu else 0,
            },
        },
    )
    if sizes.atari_runners > 0:
        start_ray(sizes)
    reset_gpu_peak()
    algo = build_algorithm(doc)
    try:
        algo.train()  # warm-up: runners started, CUDA kernels loaded; not measured
        t0, s0 = time.perf_counter(), algo.timesteps
        learn: list[float] = []
        sample: list[float] = []
        while not learn or time.perf_counter() - t0 < sizes.atari_seconds:
            timers = algo.train()["timers"]
            learn.append(timers["learn"])
            sample.append(timers["sample"])
        dt = time.perf_counter() - t0
        return {
            "env": "ALE/Pong-v5 (AtariPreprocessing 84×84 grayscale, frame skip 4, 4 stacked frames)",
            "device": str(algo.learner.device),
            "env_runners": sizes.atari_runners,
            "envs_per_runner": sizes.atari_envs,
            "train_batch_size": sizes.atari_batch,
            "minibatch_size": sizes.atari_minibatch,
            "num_epochs": sizes.atari_epochs,
            "iterations": len(learn),
            "env_steps": algo.timesteps - s0,
            "seconds": dt,
            "env_steps_per_s": (algo.timesteps - s0) / dt,
            "learn_s_per_iteration": sum(learn) / len(learn),
            "sample_s_per_iteration": sum(sample) / len(sample),
            **gpu_memory_mb(),
        }
    finally:
        algo.stop()


def updates_per_second(algorithm: str, sizes: Sizes, gpu: bool) -> dict[str, Any]:
    """Fill the replay buffer to the learning start, then time the algorithm's own `learn(k)` (replay
    sampling, host→device copies, the gradient steps, one host sync per call) in chunks of 50 updates."""
    hidden = [sizes.offpolicy_hidden, sizes.offpolicy_hidden]
    doc = job(
        algorithm.lower(),
        algorithm,
        "Pendulum-v1",
        {
            "config": {
                "train_batch_size": sizes.offpolicy_batch,
                "num_steps_sampled_before_learning_starts": sizes.offpolicy_learning_starts,
                "rollout_fragment_length": 64,
                "model": {"fcnet_hiddens": hidden, "fcnet_activation": "relu"},
            },
            "resources": {"envRunners": 0, "envsPerRunner": 1, "gpusPerLearner": 1 if gpu else 0},
        },
    )
    reset_gpu_peak()
    algo: Any = build_algorithm(doc)
    try:
        while not algo.learning_started():
            algo.train()
        algo.learn(10)  # warm-up: kernels, optimizer state
        chunk = 50
        updates = 0
        t0 = time.perf_counter()
        while updates == 0 or time.perf_counter() - t0 < sizes.offpolicy_seconds:
            algo.learn(chunk)
            updates += chunk
        dt = time.perf_counter() - t0
        return {
            "device": str(algo.learner.device),
            "torch_threads": torch.get_num_threads(),
            "updates": updates,
            "seconds": dt,
            "updates_per_s": updates / dt,
            **gpu_memory_mb(),
        }
    finally:
        algo.stop()


def stage_offpolicy(sizes: Sizes, gpu: bool) -> dict[str, Any]:
    result: dict[str, Any] = {
        "env": "Pendulum-v1",
        "hidden": [sizes.offpolicy_hidden, sizes.offpolicy_hidden],
        "train_batch_size": sizes.offpolicy_batch,
    }
    for algorithm in ("SAC", "TD3"):
        row: dict[str, Any] = {"cpu": updates_per_second(algorithm, sizes, gpu=False)}
        if gpu:
            row["gpu"] = updates_per_second(algorithm, sizes, gpu=True)
            row["gpu_speedup"] = row["gpu"]["updates_per_s"] / row["cpu"]["updates_per_s"]
        result[algorithm] = row
    return result


def stage_async_scaling(sizes: Sizes, gpu: bool) -> dict[str, Any]:
    start_ray(sizes)
    result: dict[str, Any] = {
        "env": "CartPole-v1 (examples/appo-cartpole.yaml, examples/impala-cartpole.yaml; 8 sub-envs per runner)",
        "cpus": os.cpu_count(),
        "learner_device": "cuda" if gpu else "cpu",
    }
    for algorithm, example in (("APPO", "appo-cartpole.yaml"), ("IMPALA", "impala-cartpole.yaml")):
        rows = []
        for n in sizes.async_runners:
            m = measure_async(
                n,
                seconds=sizes.async_seconds,
                warmup_s=sizes.async_warmup_s,
                gpu=gpu,
                extra=[],
                example=example,
            )
            rows.append({"env_runners": n, **m})
        result[f"{algorithm}_learner_alone"] = learner_ceiling(
            seconds=sizes.async_seconds / 2, gpu=gpu, example=example
        )
        single = rows[0]["steps_per_s"] if rows[0]["env_runners"] == 1 else None
        for row in rows:
            row["scaling_efficiency"] = row["steps_per_s"] / (row["env_runners"] * single) if single else None
        result[algorithm] = rows
    return result


def stage_nccl_ddp(sizes: Sizes, gpu: bool) -> dict[str, Any]:
    gpus = torch.cuda.device_count() if gpu else 0
    if not gpu:
        return {"skipped": "--cpu: no GPUs (the gloo data-parallel path is tested on CPU by the test suite)"}
    if gpus < 2:
        return {"skipped": f"{gpus} GPU visible (torch.cuda.device_count()); the nccl path needs at least 2"}
    doc = job(
        "ppo-ddp",
        "PPO",
        "CartPole-v1",
        {
            "config": {"train_batch_size": 8192, "minibatch_size": 512, "num_epochs": 4},
            "resources": {"envRunners": 2, "envsPerRunner": 16, "learners": 2, "gpusPerLearner": 1},
        },
    )
    start_ray(sizes)
    algo = build_algorithm(doc)
    try:
        algo.train()  # warm-up: the process group joined, kernels loaded
        t0, s0 = time.perf_counter(), algo.timesteps
        learn = [algo.train()["timers"]["learn"] for _ in range(sizes.ddp_iterations)]
        dt = time.perf_counter() - t0
        return {
            "learners": 2,
            "backend": "nccl",
            "iterations": len(learn),
            "env_steps_per_s": (algo.timesteps - s0) / dt,
            "learn_s_per_iteration": sum(learn) / len(learn),
        }
    finally:
        algo.stop()


STAGE_FUNCS: dict[str, Callable[[Sizes, bool], dict[str, Any]]] = {
    "ppo_atari": stage_ppo_atari,
    "offpolicy": stage_offpolicy,
    "async_scaling": stage_async_scaling,
    "nccl_ddp": stage_nccl_ddp,
}


# -- report -------------------------------------------------------------------------------------------


def machine() -> dict[str, Any]:
    cuda = torch.cuda.is_available()
    return {
        "hostname": platform.node(),
        "cpus": os.cpu_count(),
        "memory_gb": psutil.virtual_memory().total / 2**30,
        "python": platform.python_version(),
        "torch": torch.__version__,
        "cuda_available": cuda,
        "cuda_version": torch.version.cuda,
        "gpus": [torch.cuda.get_device_name(i) for i in range(torch.cuda.device_count())] if cuda else [],
    }


def fmt(x: Any, spec: str = ",.0f") -> str:
    return "n/a" if x is None else format(x, spec)


def markdown(report: dict[str, Any]) -> str:
    """The summary tables, in bench/RESULTS.md's style."""
    m = report["machine"]
    mode = report["mode"]
    lines = [
        f"# GPU check — {report['started_at']}",
        "",
        f"{m['hostname']}: {m['cpus']} CPUs, {m['memory_gb']:.0f} GiB, GPUs: {', '.join(m['gpus']) or 'none'}; "
        f"torch {m['torch']} (CUDA {m['cuda_version']}), Python {m['python']}. "
        f"Mode: {'--cpu ' if mode['cpu'] else ''}{'--smoke' if mode['smoke'] else 'full'}. "
        f"Wall time {report['wall_s']:.0f} s; load average at start {report['load_start']}.",
        "",
    ]
    stages = report["stages"]
    for name in STAGES:
        st = stages.get(name)
        if st is None:
            continue
        lines.append(f"## {name} — {st['status']} ({st['wall_s']:.1f} s)")
        lines.append("")
        if st["status"] != "ok":
            lines += [f"{st.get('reason', '')}", ""]
            continue
        r = st["result"]
        if name == "ppo_atari":
            lines += [
                f"{r['env']}; {r['env_runners']} runners × {r['envs_per_runner']} envs; batch "
                f"{r['train_batch_size']}, minibatch {r['minibatch_size']}, {r['num_epochs']} epochs.",
                "",
                "| learner | iterations | env steps/s | learn s/iteration | sample s/iteration | GPU mem peak allocated / reserved (MiB) |",
                "|---|---|---|---|---|---|",
                f"| {r['device']} | {r['iterations']} | {fmt(r['env_steps_per_s'])} | "
                f"{r['learn_s_per_iteration']:.2f} | {r['sample_s_per_iteration']:.2f} | "
                f"{fmt(r['gpu_mem_peak_allocated_mb'])} / {fmt(r['gpu_mem_peak_reserved_mb'])} |",
                "",
            ]
        elif name == "offpolicy":
            lines += [
                f"{r['env']}, networks {r['hidden']}, batch {r['train_batch_size']}.",
                "",
                "| algorithm | CPU updates/s | GPU updates/s | GPU speed-up |",
                "|---|---|---|---|",
            ]
            for algorithm in ("SAC", "TD3"):
                row = r[algorithm]
                gpu_ups = row["gpu"]["updates_per_s"] if "gpu" in row else None
                speedup = f"{row['gpu_speedup']:.1f}×" if "gpu_speedup" in row else "n/a"
                lines.append(
                    f"| {algorithm} | {fmt(row['cpu']['updates_per_s'])} | {fmt(gpu_ups)} | {speedup} |"
                )
            lines.append("")
        elif name == "async_scaling":
            lines += [f"{r['env']}; learner on {r['learner_device']}; {r['cpus']} CPUs.", ""]
            lines += [
                "| algorithm | env runners | env steps/s | trained steps/s | scaling efficiency | policy lag mean / max |",
                "|---|---|---|---|---|---|",
            ]
            for algorithm in ("APPO", "IMPALA"):
                alone = r.get(f"{algorithm}_learner_alone")
                if alone is not None:
                    lines.append(
                        f"| {algorithm} | learner alone (synthetic batches, no runners) | n/a | "
                        f"{fmt(alone['steps_per_s'])} | n/a | n/a |"
                    )
                for row in r[algorithm]:
                    eff = fmt(row["scaling_efficiency"], ".0%")
                    lines.append(
                        f"| {algorithm} | {row['env_runners']} | {fmt(row['steps_per_s'])} | "
                        f"{fmt(row['trained_per_s'])} | {eff} | {row['lag_mean']:.1f} / {row['lag_max']:.0f} |"
                    )
            lines.append("")
        elif name == "nccl_ddp":
            if "skipped" in r:
                lines += [f"Skipped: {r['skipped']}", ""]
            else:
                lines += [
                    f"PPO CartPole-v1 on {r['learners']} learners ({r['backend']}): "
                    f"{fmt(r['env_steps_per_s'])} env steps/s, learn {r['learn_s_per_iteration']:.2f} s/iteration.",
                    "",
                ]
    return "\n".join(lines) + "\n"


def write(out: Path, report: dict[str, Any]) -> None:
    (out / "gpu_check.json").write_text(json.dumps(report, indent=2) + "\n")
    (out / "gpu_check.md").write_text(markdown(report))


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="bench/gpu_check.sh", description=__doc__.split("\n\n")[0])
    ap.add_argument("--cpu", action="store_true", help="every learner on the CPU; no CUDA needed")
    ap.add_argument("--smoke", action="store_true", help="every stage tiny (CI)")
    ap.add_argument("--stages", nargs="+", choices=STAGES, default=list(STAGES), help="run only these")
    ap.add_argument("--out", type=Path, required=True, help="results directory (the script passes $OUT)")
    args = ap.parse_args(argv)
    out: Path = args.out
    out.mkdir(parents=True, exist_ok=True)
    gpu = not args.cpu
    report: dict[str, Any] = {
        "schema": SCHEMA,
        "started_at": time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime()),
        "mode": {"cpu": args.cpu, "smoke": args.smoke},
        "machine": machine(),
        "load_start": [round(x, 1) for x in os.getloadavg()],
        "wall_s": 0.0,
        "stages": {},
        "ok": False,
    }
    if gpu and not torch.cuda.is_available():
        report["error"] = "CUDA is not available to torch (pass --cpu to run on the CPU)"
        write(out, report)
        print(
            f"gpu_check: {report['error']}; torch {torch.__version__}, CUDA build {torch.version.cuda}",
            file=sys.stderr,
        )
        return 1
    sizes = SMOKE if args.smoke else FULL
    t_start = time.perf_counter()
    for name in args.stages:
        print(f"gpu_check: {name} …", file=sys.stderr, flush=True)
        t0 = time.perf_counter()
        stage: dict[str, Any] = {"load_start": [round(x, 1) for x in os.getloadavg()]}
        try:
            result = STAGE_FUNCS[name](sizes, gpu)
            if "skipped" in result:
                stage.update(status="skipped", reason=result["skipped"])
            else:
                stage.update(status="ok", result=result)
        except Exception as exc:  # a stage's failure is recorded and the others still run
            stage.update(
                status="failed", reason=f"{type(exc).__name__}: {exc}", traceback=traceback.format_exc()
            )
            print(f"gpu_check: {name} FAILED: {stage['reason']}", file=sys.stderr, flush=True)
        stage["wall_s"] = time.perf_counter() - t0
        report["stages"][name] = stage
        report["wall_s"] = time.perf_counter() - t_start
        write(out, report)
    report["ok"] = all(s["status"] != "failed" for s in report["stages"].values())
    report["load_end"] = [round(x, 1) for x in os.getloadavg()]
    write(out, report)
    print((out / "gpu_check.md").read_text())
    failed = [n for n, s in report["stages"].items() if s["status"] == "failed"]
    if failed:
        print(
            f"gpu_check: FAILED stages: {', '.join(failed)} (see {out / 'gpu_check.json'})", file=sys.stderr
        )
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
