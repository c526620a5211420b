"""Learning curves of runs as Markdown tables, from their result.json: at step checkpoints (evenly spaced,
or the budgets given with --at), the training return as kuberl reports it (mean of the last 100 episodes,
the window of SB3's ep_info_buffer), the mean of the last --recent episodes (on HalfCheetah, 100 episodes
are 100k steps: the window lags the policy by that much), the last evaluation return where the job
evaluates, the training wall time, and the process CPU time where bench/cpu_log.py logged it beside the
run (RUN_DIR/cpu_log.jsonl); then one summary row per run. A run cut before a checkpoint shows it as not
reached. This is how docs/benchmarks.md's MuJoCo and Atari tables are made.

    python bench/curve_table.py RUN_DIR [RUN_DIR …] [--points 8 | --at 100000,250000,500000,1000000]
"""

from __future__ import annotations

import argparse
import itertools
import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from kuberl.results import read_results


def fmt(x: float | None, spec: str = ",.1f") -> str:
    return "–" if x is None else format(x, spec)


def last_eval(rows: list[dict[str, Any]]) -> float | None:
    """The newest evaluation return at or before the end of `rows` (None before the first evaluation)."""
    for r in reversed(rows):
        ev = r.get("evaluation") or {}
        if ev.get("episode_return_mean") is not None:
            return float(ev["episode_return_mean"])
    return None


def recent_mean(rows: list[dict[str, Any]], k: int) -> float | None:
    """Mean return of the last `k` episodes finished by the end of `rows` (each row's hist_stats holds
    the episodes its iteration finished)."""
    returns: list[float] = []
    for r in reversed(rows):
        returns[:0] = (r.get("hist_stats") or {}).get("episode_return", [])
        if len(returns) >= k:
            break
    return float(np.mean(returns[-k:])) if returns else None


def cpu_log(run: Path) -> list[tuple[int, float]]:
    """(timesteps_total, process CPU seconds) pairs from bench/cpu_log.py, in step order."""
    path = run / "cpu_log.jsonl"
    if not path.exists():
        return []
    pairs = [
        (int(d["timesteps_total"]), float(d["cpu_s"])) for d in map(json.loads, path.read_text().splitlines())
    ]
    return sorted(pairs)


def cpu_at(log: list[tuple[int, float]], steps: int) -> float | None:
    """CPU seconds when the run reached `steps`, interpolated between the two log lines around it
    (None outside the logged range: the log may start after the run)."""
    for (s0, c0), (s1, c1) in itertools.pairwise(log):
        if s0 <= steps <= s1:
            return c0 if s1 == s0 else c0 + (c1 - c0) * (steps - s0) / (s1 - s0)
    return None


def curve(run: Path, marks: Sequence[int] | None, points: int, recent: int) -> list[str]:
    rows = list(read_results(run))
    if not rows:
        return [f"{run.name}: no iterations in result.json"]
    total = int(rows[-1]["timesteps_total"])
    if marks is None:
        marks = sorted({max(1, total * k // points) for k in range(1, points + 1)})
    log = cpu_log(run)
    lines = [
        f"**{run.name}**",
        "",
        f"| env steps | training return (100 episodes) | last {recent} episodes | evaluation return "
        "| training wall (min) | process CPU (s) |",
        "|---|---|---|---|---|---|",
    ]
    shown: set[int] = set()
    for m in marks:
        if m > total:
            lines.append(f"| {m:,} | not reached (run ended at {total:,}) | | | | |")
            continue
        upto = [r for r in rows if int(r["timesteps_total"]) <= m] or rows[:1]
        steps = int(upto[-1]["timesteps_total"])
        if steps in shown:  # fewer iterations than points: each iteration once
            continue
        shown.add(steps)
        lines.append(
            f"| {steps:,} | {fmt(upto[-1].get('episode_return_mean'))} | {fmt(recent_mean(upto, recent))} "
            f"| {fmt(last_eval(upto))} | {upto[-1]['time_total_s'] / 60:.1f} | {fmt(cpu_at(log, steps), ',.0f')} |"
        )
    return [*lines, ""]


def summary(run: Path, recent: int) -> str:
    rows = list(read_results(run))
    if not rows:
        return f"| {run.name} | 0 | – | – | – | – | – | – |"
    last = rows[-1]
    best = max(
        (r["episode_return_mean"] for r in rows if r.get("episode_return_mean") is not None), default=None
    )
    log = cpu_log(run)
    return (
        f"| {run.name} | {int(last['timesteps_total']):,} | {last['time_total_s'] / 60:.1f} "
        f"| {fmt(log[-1][1] if log else None, ',.0f')} | {fmt(last.get('episode_return_mean'))} "
        f"| {fmt(recent_mean(rows, recent))} | {fmt(best)} | {fmt(last_eval(rows))} |"
    )


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("runs", nargs="+", type=Path)
    ap.add_argument("--points", type=int, default=8)
    ap.add_argument("--at", help="comma-separated step checkpoints, e.g. 100000,250000,500000,1000000")
    ap.add_argument("--recent", type=int, default=10, help="episodes in the recent-return column")
    args = ap.parse_args()
    marks = [int(s) for s in args.at.split(",")] if args.at else None
    for run in args.runs:
        print("\n".join(curve(run, marks, args.points, args.recent)))
    print(
        f"| run | env steps | training wall (min) | process CPU (s) | last training return (100 episodes) "
        f"| last {args.recent} episodes | best training return | last evaluation return |"
    )
    print("|---|---|---|---|---|---|---|---|")
    for run in args.runs:
        print(summary(run, args.recent))


if __name__ == "__main__":
    main()
