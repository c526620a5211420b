"""Shared by the benchmark child processes: the options every one takes, and the report of its
timestamps as one JSON line on stdout."""

from __future__ import annotations

import argparse
import json
import sys
import time

T_PROCESS = time.time()  # as early as the child can observe; the parent also records its spawn time


def report(**fields: object) -> None:
    sys.stdout.write(json.dumps({"process_t0": T_PROCESS, **fields}) + "\n")
    sys.stdout.flush()


def race_parser(
    *, threshold: float | None, max_steps: int, threshold_help: str | None = None
) -> argparse.ArgumentParser:
    """--seed, --threshold and --max-steps, which the harness passes to every time-to-threshold runner;
    a runner adds its own options."""
    ap = argparse.ArgumentParser()
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--threshold", type=float, default=threshold, help=threshold_help)
    ap.add_argument("--max-steps", type=int, default=max_steps)
    return ap
