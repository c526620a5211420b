"""The S3 server SIGKILLed mid-run and started again with its data (tests/faults/s3_killed.py): the run
ends 0 with its final checkpoint or 75 naming the newest complete one, every checkpoint with a manifest
verifies, and a later `resume: auto` restores exactly the newest complete checkpoint."""

from __future__ import annotations

from pathlib import Path

from tests.faults.s3_killed import run_s3_kill_campaign


def test_s3_server_killed_and_restarted_mid_run(tmp_path: Path) -> None:
    result = run_s3_kill_campaign(tmp_path, kills=1, iterations=10, seed=0)
    assert result.problems == [], "\n".join(result.problems)
    assert result.kills == 1
    assert result.exit_status in (0, 75)
    assert result.failed_saves >= 1  # the kill hit the run: saves failed and training went on
    # saves that fail do not pile up serialised checkpoints in memory (a loose bound: allocator noise)
    assert result.rss_mb_peak < result.rss_mb_at_first_kill + 200, result
    assert result.replayed_requests > 0  # the restarted server had its data back
    assert result.checkpoints_verified >= 1
    assert result.resumed_from.endswith(result.newest_complete)
