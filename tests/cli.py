"""The `kuberl` CLI run the way users (and the operator's pod) run it: a subprocess, output captured.

One helper for every test module, so they all import this checkout's packages first (a worktree's code,
not whatever kuberl is installed) and time out rather than hang.
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterable
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
#: This checkout's packages first, then the repository root (examples, tests).
PYTHONPATH = os.pathsep.join(str(ROOT / p) for p in ("trainer_image", "operator", ""))


def cli_env(
    extra: dict[str, str] | None = None, pythonpath: Iterable[str] = (), unset: Iterable[str] = ()
) -> dict[str, str]:
    """os.environ with this checkout on PYTHONPATH (after `pythonpath`), `unset` removed, `extra` added."""
    drop = set(unset)
    env = {k: v for k, v in os.environ.items() if k not in drop}
    env["PYTHONPATH"] = os.pathsep.join((*pythonpath, PYTHONPATH))
    return {**env, **(extra or {})}


def cli_command(*args: str, python: Iterable[str] = ()) -> list[str]:
    """The argv of `kuberl ARGS…` with this interpreter; `python` are interpreter options
    (e.g. `-X importtime`). For a Popen the test drives itself; `kuberl()` runs it to the end."""
    return [sys.executable, *python, "-m", "kuberl.cli", *args]


def kuberl(
    *args: str,
    cwd: Path,
    env: dict[str, str] | None = None,
    timeout: float = 300,
    pythonpath: Iterable[str] = (),
    unset: Iterable[str] = (),
    python: Iterable[str] = (),
) -> subprocess.CompletedProcess[str]:
    """`kuberl ARGS…` in `cwd`; `python` are interpreter options (e.g. `-X importtime`)."""
    return subprocess.run(
        cli_command(*args, python=python),
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=timeout,
        env=cli_env(env, pythonpath, unset),
        check=False,
    )
