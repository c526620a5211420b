"""bench/curve_table.py as docs/benchmarks.md runs it: return, recent-episode mean, wall and CPU at the
requested step checkpoints, from a run's result.json and bench/cpu_log.py's cpu_log.jsonl."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def write_run(run: Path) -> None:
    run.mkdir()
    rows = [  # three iterations of 1,000 steps; window mean as kuberl reports it, the iteration's episodes
        {"timesteps_total": 1000, "episode_return_mean": -10.0, "time_total_s": 60.0,
         "hist_stats": {"episode_return": [-12.0, -8.0]}},
        {"timesteps_total": 2000, "episode_return_mean": -5.0, "time_total_s": 120.0,
         "hist_stats": {"episode_return": [0.0]}},
        {"timesteps_total": 3000, "episode_return_mean": 1.0, "time_total_s": 180.0,
         "hist_stats": {"episode_return": [6.0, 10.0]}},
    ]  # fmt: skip
    (run / "result.json").write_text("".join(json.dumps(r) + "\n" for r in rows))
    log = [(0, 2.0), (1500, 32.0), (3000, 47.0)]  # CPU rising 20 s per 1k steps, then 10 s per 1k
    (run / "cpu_log.jsonl").write_text(
        "".join(json.dumps({"wall_s": 0.0, "cpu_s": c, "timesteps_total": s}) + "\n" for s, c in log)
    )


def test_checkpoints_with_recent_returns_and_cpu(tmp_path: Path) -> None:
    run = tmp_path / "ppo-x"
    write_run(run)
    env = {**os.environ, "PYTHONPATH": str(ROOT / "trainer_image")}
    out = subprocess.run(
        [
            sys.executable,
            str(ROOT / "bench" / "curve_table.py"),
            str(run),
            "--at",
            "1000,2500,5000",
            "--recent",
            "2",
        ],
        capture_output=True,
        text=True,
        env=env,
        check=True,
    ).stdout
    lines = out.splitlines()
    # 1,000 steps: window -10, last two episodes (-12, -8) → -10, 1 min, CPU 2 + 20 = 22 s
    assert "| 1,000 | -10.0 | -10.0 | – | 1.0 | 22 |" in lines
    # 2,500 → the last iteration at or before it (2,000): last two episodes (-8, 0) → -4; CPU 32 + 5 = 37 s
    assert "| 2,000 | -5.0 | -4.0 | – | 2.0 | 37 |" in lines
    assert "| 5,000 | not reached (run ended at 3,000) | | | | |" in lines
    # summary: 3,000 steps, 3.0 min, 47 CPU-s, window 1.0, last two episodes (6, 10) → 8.0, best 1.0
    assert "| ppo-x | 3,000 | 3.0 | 47 | 1.0 | 8.0 | 1.0 | – |" in lines


def test_cpu_log_follows_a_process_until_it_exits(tmp_path: Path) -> None:
    """bench/cpu_log.py on a real process that burns CPU for ~1.5 s: rising CPU, the run's newest step
    count, and it returns when the process exits."""
    run = tmp_path / "run"
    write_run(run)
    (run / "cpu_log.jsonl").unlink()  # the logger appends: start from none
    busy = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import time\nt = time.process_time()\nwhile time.process_time() - t < 1.5: pass",
        ]
    )
    subprocess.run(
        [sys.executable, str(ROOT / "bench" / "cpu_log.py"), str(busy.pid), str(run), "--every", "0.2"],
        check=True,
        timeout=120,
    )
    assert busy.wait(timeout=5) == 0
    rows = [json.loads(line) for line in (run / "cpu_log.jsonl").read_text().splitlines()]
    assert len(rows) >= 2
    cpu = [r["cpu_s"] for r in rows]
    assert cpu == sorted(cpu)
    assert cpu[-1] > cpu[0]
    assert {r["timesteps_total"] for r in rows} == {3000}
