"""Checkpoints are never lost and never misreported across runs sharing a store (review H1), and a
diverged run never checkpoints non-finite weights (review M1), through `kuberl run` as users run it."""

from __future__ import annotations

import json
import re
from pathlib import Path

from tests.faults.common import TINY_JOB, kuberl, one_line


def printed_checkpoint(stdout: str) -> str:
    match = re.search(r"checkpoint: (\S+)", stdout)
    assert match, stdout
    return match.group(1)


def test_resume_never_keeps_the_new_runs_checkpoints_and_auto_resumes_the_new_run(tmp_path: Path) -> None:
    (tmp_path / "job.yaml").write_text(TINY_JOB)
    store = tmp_path / "runs" / "tiny" / "checkpoints"
    first = kuberl("run", "job.yaml", "--no-progress", "--set", "stop.iterations=6", cwd=tmp_path)
    assert first.returncode == 0, first.stderr
    second = kuberl(
        "run", "job.yaml", "--no-progress", "--set", "resume=never", "--set", "config.lr=0.0001", cwd=tmp_path
    )
    assert second.returncode == 0, second.stderr
    assert "earlier runs" in one_line(second.stderr)
    reported = printed_checkpoint(second.stdout)
    assert reported.endswith("checkpoint_000003")
    assert (Path(reported.removeprefix("file://")) / "manifest.json").exists(), (
        "reported a missing checkpoint"
    )
    # The new run's three checkpoints are all there (keep: 3), and `latest` names its newest.
    manifests = {p.parent.name: json.loads(p.read_text()) for p in store.glob("*/manifest.json")}
    runs = {n: m["metadata"]["run"] for n, m in manifests.items()}
    new_run = runs["checkpoint_000003"]
    assert sorted(n for n, r in runs.items() if r == new_run) == [f"checkpoint_00000{i}" for i in (1, 2, 3)]
    assert json.loads((store / "latest").read_text())["name"] == "checkpoint_000003"
    # An operator retry (resume: auto) continues the new run, not the old run's iteration 6.
    third = kuberl("run", "job.yaml", "--no-progress", "--set", "stop.iterations=4", cwd=tmp_path)
    assert third.returncode == 0, third.stderr
    assert "resumed from" in third.stdout
    assert "checkpoint_000003" in one_line(third.stdout.split("resumed from")[1])
    four = json.loads((store / "checkpoint_000004" / "manifest.json").read_text())
    assert four["metadata"]["run"] == new_run


def test_infinite_lr_is_refused_by_the_spec(tmp_path: Path) -> None:
    (tmp_path / "job.yaml").write_text(TINY_JOB)
    res = kuberl("run", "job.yaml", "--set", "config.lr=.inf", cwd=tmp_path)
    assert res.returncode == 2, res.stderr
    assert "spec.config.lr" in one_line(res.stderr)
    assert "Traceback" not in res.stderr


def test_a_diverging_run_fails_and_never_checkpoints_non_finite_weights(tmp_path: Path) -> None:
    """A huge but finite lr (which the spec must accept) makes PPO's weights NaN: the run fails with
    exit 65 and a message, and the store holds no checkpoint written after the divergence."""
    (tmp_path / "job.yaml").write_text(TINY_JOB)
    res = kuberl(
        "run",
        "job.yaml",
        "--no-progress",
        "--set",
        "config.lr=1e30",
        "--set",
        "stop.iterations=8",
        cwd=tmp_path,
    )
    assert res.returncode == 65, (res.stdout, res.stderr)
    assert "NaN or infinite" in one_line(res.stderr)
    assert "Traceback" not in res.stderr

    from kuberl.core.state_io import loads_state, non_finite

    for state in (tmp_path / "runs" / "tiny" / "checkpoints").glob("*/algorithm_state.pt"):
        assert non_finite(loads_state(state.read_bytes(), where=str(state))) == [], state
