"""The release campaign in docs/reliability.md (`python bench/faults/run.py …`) runs, here with a small
policy-server campaign only, and reports what the docs' figures come from."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from tests.faults.common import ROOT, cli_env


def test_bench_faults_command_runs_and_reports(tmp_path: Path) -> None:
    out = tmp_path / "results.json"
    cmd = [
        sys.executable,
        "bench/faults/run.py",
        "--kills",
        "0",
        "--s3-kills",
        "0",
        "--jobs",
        "0",
        "--requests",
        "40",
    ]
    res = subprocess.run(
        [*cmd, "--out", str(out)], cwd=ROOT, env=cli_env(), capture_output=True, text=True, timeout=300
    )
    assert res.returncode == 0, res.stderr[-3000:]
    report = json.loads(out.read_text())
    server = report["policy_server"]
    assert server["requests"] >= 40
    assert server["server_errors_5xx"] == 0
    assert server["healthz_with_1100_idle_connections"]["ok"] is True
    assert report["kills"] is None
    assert report["s3_kills"] is None
