"""SIGKILLs of `kuberl run`, some inside a checkpoint write, each followed by `resume: auto`: every
resume starts exactly at the newest complete checkpoint on disk (no progress lost, never a partial one:
every load is sha256-verified), result.json ends up 1, 2, … with no gap or repeat, and the job still
reaches its end."""

from __future__ import annotations

from pathlib import Path

from tests.faults.kill_campaign import run_campaign


def test_random_sigkills_then_resume_auto(tmp_path: Path) -> None:
    result = run_campaign(tmp_path, kills=3, iterations=30, seed=0)
    assert result.problems == [], "\n".join(result.problems)
    assert result.kills == 3
    assert result.resumes_checked >= 3
    assert result.tracebacks == 0
