"""Shared by the benchmark child processes: report timestamps as one JSON line on stdout."""

from __future__ import annotations

import json
import sys
import time

T_PROCESS = time.time()  # as early as the child can observe; the parent also records its spawn time


def report(**fields: object) -> None:
    sys.stdout.write(json.dumps({"process_t0": T_PROCESS, **fields}) + "\n")
    sys.stdout.flush()
