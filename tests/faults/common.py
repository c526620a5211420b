"""What the fault tests share: the `kuberl` CLI run as a user runs it, against this checkout's code, and a
tiny job that trains in a second or two without Ray."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
#: This checkout's packages first, so a worktree's code is what the subprocess imports.
PYTHONPATH = os.pathsep.join(str(ROOT / p) for p in ("trainer_image", "operator", ""))

TINY_JOB = """apiVersion: kuberl.io/v1alpha1
kind: RLTrainingJob
metadata: {name: tiny}
spec:
  algorithm: PPO
  env: CartPole-v1
  seed: 0
  config: {train_batch_size: 128, minibatch_size: 64, num_epochs: 1}
  stop: {iterations: 3}
  resources: {envRunners: 0, envsPerRunner: 2}
  checkpoint: {everyIterations: 1, keep: 3}
  metrics: {enabled: false}
"""


def cli_env(extra: dict[str, str] | None = None) -> dict[str, str]:
    return {**os.environ, "PYTHONPATH": PYTHONPATH, **(extra or {})}


def kuberl(
    *args: str, cwd: Path, env: dict[str, str] | None = None, timeout: float = 240
) -> subprocess.CompletedProcess[str]:
    """`kuberl ARGS…` in `cwd`, output captured; raises TimeoutExpired rather than hanging."""
    return subprocess.run(
        [sys.executable, "-m", "kuberl.cli", *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=timeout,
        env=cli_env(env),
    )


def one_line(text: str) -> str:
    """Rich wraps long messages; compare words, not line breaks."""
    return " ".join(text.split())
