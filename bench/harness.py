"""Shared machinery of the time-to-threshold benchmarks (bench_ppo_cartpole, bench_dqn, bench_a2c,
bench_offpolicy): run each framework in a fresh child process, sample its process tree's memory, and
print medians and ratios as a markdown table.

A child (bench/runners/*.py) prints one JSON line via runners/common.report(): train_start, solved
(a timestamp or null), steps, ret. "From process start" is measured from just before the spawn, so it
includes interpreter start, imports and (for Ray users) cluster start.
"""

from __future__ import annotations

import contextlib
import json
import os
import platform
import resource
import statistics
import subprocess
import sys
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import psutil

RUNNERS_DIR = Path(__file__).resolve().parent / "runners"


def runner(script: str, *args: str) -> list[str]:
    """The command line (after the interpreter) of a child runner: bench/runners/`script` with `args`."""
    return [str(RUNNERS_DIR / script), *args]


def tree_rss(proc: psutil.Process) -> int:
    """Summed RSS of a process and all its descendants (Ray workers included)."""
    total = 0
    for p in [proc, *proc.children(recursive=True)]:
        with contextlib.suppress(psutil.Error):
            total += p.memory_info().rss
    return total


def run_one(
    name: str, argv: Sequence[str], seed: int, *, extra: Sequence[str] = (), timeout_s: float | None = None
) -> dict[str, Any]:
    """One child run; peak memory sampled every 50 ms; killed (counted unsolved) after `timeout_s`.

    A child may also report `eval_s` (time spent evaluating inside training) and `history`; then
    `train_excl_eval_s` is the training time without the evaluations."""
    env = {**os.environ, "RAY_USAGE_STATS_ENABLED": "0", "RAY_AUTH_MODE": "disabled", "PYTHONUNBUFFERED": "1"}
    # CPU seconds of the child (and the descendants it waited for; Ray's workers are not among them):
    # on a shared machine wall time mostly measures the load, CPU time much less so.
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    t0 = time.time()
    child = subprocess.Popen(
        [sys.executable, *argv, "--seed", str(seed), *extra],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
        env=env,
    )
    proc = psutil.Process(child.pid)
    peak = 0
    while child.poll() is None:
        with contextlib.suppress(psutil.Error):
            peak = max(peak, tree_rss(proc))
        if timeout_s is not None and time.time() - t0 > timeout_s:
            child.kill()
        time.sleep(0.05)
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu_s = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    out = child.stdout.read() if child.stdout else ""
    lines = [line for line in out.splitlines() if line.startswith("{")]
    if not lines:
        return {"framework": name, "seed": seed, "solved": False, "peak_mb": peak / 2**20, "cpu_s": cpu_s}
    r = json.loads(lines[-1])
    solved = r["solved"] is not None
    optional: dict[str, Any] = {}
    if "eval_s" in r:
        optional["train_excl_eval_s"] = (r["solved"] - r["train_start"] - r["eval_s"]) if solved else None
    if "train_cpu_s" in r:  # CPU seconds of the training loop (this process's threads; no Ray workers)
        optional["train_cpu_s"] = r["train_cpu_s"]
    for key in ("warmup_cpu_s", "warmup_steps", "grad_steps"):  # the warm-up apart from learning
        if key in r:
            optional[key] = r[key]
    if "history" in r:
        optional["history"] = r["history"]
    return {
        **optional,
        "framework": name,
        "seed": seed,
        "solved": solved,
        "from_process_s": (r["solved"] - t0) if solved else None,
        "from_train_s": (r["solved"] - r["train_start"]) if solved else None,
        "startup_s": r["train_start"] - t0,
        "steps": r["steps"],
        "return": r.get("ret"),
        "peak_mb": peak / 2**20,
        "cpu_s": cpu_s,
    }


def run_interleaved(
    runners: Mapping[str, Sequence[str]], seeds: int, *, extra: Sequence[str] = (), first_seed: int = 0
) -> list[dict[str, Any]]:
    """Every framework once per seed (`first_seed` … `first_seed + seeds - 1`), alternating, so drift in
    machine load hits all of them alike."""
    runs = []
    for seed in range(first_seed, first_seed + seeds):
        for name, argv in runners.items():
            runs.append(run_one(name, argv, seed, extra=extra))
            print(json.dumps(runs[-1]), file=sys.stderr, flush=True)
    return runs


def median(xs: list[Any]) -> float | None:
    vals = [x for x in xs if x is not None]
    return statistics.median(vals) if vals else None


def fmt(x: float | None, spec: str = ".1f") -> str:
    return "—" if x is None else format(x, spec)


def ratio(a: float | None, b: float | None) -> str:
    return f"{a / b:.1f}×" if a and b else "—"


def table(runs: list[dict[str, Any]], *, title: str, baseline: str = "kuberl") -> str:
    """Medians per framework and the baseline's speed-up over each, from process and from training start."""
    names = list(dict.fromkeys(r["framework"] for r in runs))
    summary: dict[str, dict[str, Any]] = {}
    for n in names:
        rs = [r for r in runs if r["framework"] == n]
        summary[n] = {
            "solved": f"{sum(bool(r['solved']) for r in rs)}/{len(rs)}",
            "proc": median([r.get("from_process_s") for r in rs]),
            "train": median([r.get("from_train_s") for r in rs]),
            "startup": median([r.get("startup_s") for r in rs]),
            "steps": median([r["steps"] for r in rs if r.get("solved")]),
            "mem": median([r["peak_mb"] for r in rs]),
            "cpu": median([r.get("cpu_s") for r in rs]),
        }
    base = summary.get(baseline, {})

    seeds = sorted({r["seed"] for r in runs})
    lines = [
        f"{title} — {platform.node()}, {psutil.cpu_count()} CPUs, {time.strftime('%Y-%m-%d')}, "
        f"seeds {seeds[0]}..{seeds[-1]} (medians)",
        "",
        "| framework | solved | from process start (s) | from training start (s) | start-up (s) | env steps | "
        f"peak RSS (MB) | process CPU (s) | {baseline} speed-up (process / training) |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for n in names:
        s = summary[n]
        lines.append(
            f"| {n} | {s['solved']} | {fmt(s['proc'])} | {fmt(s['train'])} | {fmt(s['startup'])} "
            f"| {fmt(s['steps'], ',.0f')} | {fmt(s['mem'], '.0f')} | {fmt(s['cpu'])} "
            f"| {ratio(s['proc'], base.get('proc'))} / {ratio(s['train'], base.get('train'))} |"
        )
    return "\n".join(lines)
