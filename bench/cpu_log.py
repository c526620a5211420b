"""Log a training process's CPU seconds against its progress, for curves of return vs CPU time:
result.json has each iteration's wall time but not CPU time, and on a shared machine CPU time is the
figure that carries over to another machine. Every `--every` seconds, appends one JSON line
{"wall_s", "cpu_s", "timesteps_total"} to RUN_DIR/cpu_log.jsonl (CPU of the process and its children,
steps from the last line of result.json), until the process exits. bench/curve_table.py reads it.

    python bench/cpu_log.py PID RUN_DIR [--every 10]
"""

from __future__ import annotations

import argparse
import contextlib
import json
import time
from pathlib import Path

import psutil


def tree_cpu(proc: psutil.Process) -> float:
    """User + system CPU seconds of a process and its live descendants."""
    total = 0.0
    for p in [proc, *proc.children(recursive=True)]:
        with contextlib.suppress(psutil.Error):
            t = p.cpu_times()
            total += t.user + t.system
    return total


def last_timesteps(result: Path) -> int:
    """timesteps_total of the newest complete line of result.json (0 before the first iteration)."""
    if not result.exists():
        return 0
    lines = result.read_bytes().splitlines()
    for line in reversed(lines):
        with contextlib.suppress(ValueError):
            return int(json.loads(line)["timesteps_total"])
    return 0


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("pid", type=int)
    ap.add_argument("run_dir", type=Path)
    ap.add_argument("--every", type=float, default=10.0)
    args = ap.parse_args()
    proc = psutil.Process(args.pid)
    start = proc.create_time()
    args.run_dir.mkdir(parents=True, exist_ok=True)  # started beside the run, before it makes the dir
    out = args.run_dir / "cpu_log.jsonl"
    while True:
        try:
            if proc.status() == psutil.STATUS_ZOMBIE:  # exited, its parent has not reaped it yet
                return
            row = {
                "wall_s": time.time() - start,
                "cpu_s": tree_cpu(proc),
                "timesteps_total": last_timesteps(args.run_dir / "result.json"),
            }
        except psutil.NoSuchProcess:
            return
        with out.open("a") as f:
            f.write(json.dumps(row) + "\n")
        time.sleep(args.every)


if __name__ == "__main__":
    main()
