"""Shared pytest setup. Fixture modules live in tests/fixtures/ (one per server: S3, Kubernetes
emulator, Prometheus…) and are all registered here, so a new one needs no edit of this file."""

from __future__ import annotations

import os
from pathlib import Path

# Keep the trainer's libraries from fighting over the 2 cores of CI machines.
os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.setdefault("MKL_NUM_THREADS", "1")
os.environ.setdefault("RAY_DEDUP_LOGS", "0")
os.environ.setdefault("RAY_AUTH_MODE", "disabled")
os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")

REPO_ROOT = Path(__file__).resolve().parent.parent

pytest_plugins = sorted(
    f"tests.fixtures.{p.stem}"
    for p in (Path(__file__).parent / "fixtures").glob("*.py")
    if p.stem != "__init__"
)
