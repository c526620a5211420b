"""SIGKILLs of `kuberl run`, some inside a checkpoint write, each followed by `resume: auto`: no resume
starts behind the newest complete checkpoint on disk (no progress lost; every load is sha256-verified,
so never a partial one), and the job still reaches its end. Resumes one iteration *ahead* of what the
harness saw are reported by the campaign, not failed here: an open finding (docs/reliability.md)."""

from __future__ import annotations

from pathlib import Path

from tests.faults.kill_campaign import run_campaign


def test_random_sigkills_then_resume_auto(tmp_path: Path) -> None:
    result = run_campaign(tmp_path, kills=3, iterations=30, seed=0)
    assert result.problems == [], "\n".join(result.problems)
    assert result.kills == 3
    assert result.resumes_checked >= 3
    assert result.tracebacks == 0
