"""Find the external tools the chart and observability tests need (helm, kubectl, promtool,
prometheus, hadolint, kubernetes-validate). ``scripts/install-tools.sh`` puts them in ``.tools/bin``;
CI runs it before pytest. A missing tool is a test failure with the command that fixes it, never a
silent skip, so that CI cannot pass without having run these checks."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[2]
TOOLS_BIN = Path(os.environ.get("KUBERL_TOOLS_DIR", REPO_ROOT / ".tools")) / "bin"
CHART_DIR = REPO_ROOT / "charts" / "kuberl"


def tool(name: str) -> str:
    """Absolute path of ``name`` from .tools/bin (then the Python env's bin and PATH), or fail."""
    for candidate in (TOOLS_BIN / name, Path(sys.executable).parent / name):
        if candidate.is_file() and os.access(candidate, os.X_OK):
            return str(candidate)
    found = shutil.which(name)
    if found:
        return found
    pytest.fail(
        f"{name} not found in {TOOLS_BIN} or on PATH: run scripts/install-tools.sh first "
        "(CI does this before the tests)",
        pytrace=False,
    )


def run(
    args: list[str], *, timeout: float = 60, check: bool = True, **kw: object
) -> subprocess.CompletedProcess[str]:
    """Run a tool, failing the test with its output when it exits non-zero and ``check`` is set."""
    proc = subprocess.run(args, capture_output=True, text=True, timeout=timeout, check=False, **kw)  # type: ignore[call-overload]
    if check and proc.returncode != 0:
        pytest.fail(f"{' '.join(args)} exited {proc.returncode}\n{proc.stdout}\n{proc.stderr}", pytrace=False)
    return proc
