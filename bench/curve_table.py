"""Learning curves of finished runs as Markdown tables, from their result.json: the training return (mean
over the iteration's window of episodes) and, where the job evaluates, the last evaluation return, at
evenly spaced step checkpoints; then one summary row per run (steps reached, wall time, last returns).
This is how docs/benchmarks.md's MuJoCo and Atari tables are made.

    python bench/curve_table.py RUN_DIR [RUN_DIR …] [--points 8]
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from kuberl.results import read_results


def fmt(x: float | None) -> str:
    return "–" if x is None else f"{x:,.1f}"


def last_eval(rows: list[dict[str, Any]]) -> float | None:
    """The newest evaluation return at or before the end of `rows` (None before the first evaluation)."""
    for r in reversed(rows):
        ev = r.get("evaluation") or {}
        if ev.get("episode_return_mean") is not None:
            return float(ev["episode_return_mean"])
    return None


def curve(run: Path, points: int) -> list[str]:
    rows = list(read_results(run))
    if not rows:
        return [f"{run.name}: no iterations in result.json"]
    total = int(rows[-1]["timesteps_total"])
    marks = sorted({max(1, total * k // points) for k in range(1, points + 1)})
    lines = [
        f"**{run.name}**",
        "",
        "| env steps | training return | evaluation return |",
        "|---|---|---|",
    ]
    shown: set[int] = set()
    for m in marks:
        upto = [r for r in rows if int(r["timesteps_total"]) <= m] or rows[:1]
        steps = int(upto[-1]["timesteps_total"])
        if steps in shown:  # fewer iterations than points: each iteration once
            continue
        shown.add(steps)
        lines.append(f"| {steps:,} | {fmt(upto[-1].get('episode_return_mean'))} | {fmt(last_eval(upto))} |")
    return [*lines, ""]


def summary(run: Path) -> str:
    rows = list(read_results(run))
    if not rows:
        return f"| {run.name} | 0 | – | – | – | – |"
    last = rows[-1]
    best = max(
        (r["episode_return_mean"] for r in rows if r.get("episode_return_mean") is not None), default=None
    )
    return (
        f"| {run.name} | {int(last['timesteps_total']):,} | {last['time_total_s'] / 60:.1f} "
        f"| {fmt(last.get('episode_return_mean'))} | {fmt(best)} | {fmt(last_eval(rows))} |"
    )


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("runs", nargs="+", type=Path)
    ap.add_argument("--points", type=int, default=8)
    args = ap.parse_args()
    for run in args.runs:
        print("\n".join(curve(run, args.points)))
    print(
        "| run | env steps | wall (min) | last training return | best training return | last evaluation return |"
    )
    print("|---|---|---|---|---|---|")
    for run in args.runs:
        print(summary(run))


if __name__ == "__main__":
    main()
