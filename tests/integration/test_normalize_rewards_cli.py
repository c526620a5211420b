"""config.normalizeRewards through `kuberl run`, as users run it: raw returns reported, the statistics
checkpointed and carried on by a resume, and the jobs where it cannot apply refused naming the field
(exit 2, no traceback, nothing written)."""

from __future__ import annotations

import json
from functools import partial
from pathlib import Path

import pytest

from kuberl.core.state_io import loads_state
from tests import cli

JOB = """apiVersion: kuberl.io/v1alpha1
kind: RLTrainingJob
metadata: {name: norm-rewards}
spec:
  algorithm: PPO
  env: CartPole-v1
  seed: 0
  config: {train_batch_size: 256, minibatch_size: 128, num_epochs: 1, lr: 0.001, normalizeRewards: true}
  stop: {iterations: 2}
  resources: {envRunners: 0, envsPerRunner: 2}
  checkpoint: {everyIterations: 1}
  resume: auto
  metrics: {port: 0}
"""

kuberl = partial(cli.kuberl, "run", "job.yaml", "--no-progress")


def _reward_filter(run_dir: Path) -> dict:
    latest = sorted((run_dir / "checkpoints").glob("checkpoint_*"))[-1]
    state = loads_state((latest / "algorithm_state.pt").read_bytes(), where=str(latest))
    return state["reward_filter"]


def test_raw_returns_reported_and_statistics_resumed(tmp_path: Path) -> None:
    (tmp_path / "job.yaml").write_text(JOB)
    first = kuberl(cwd=tmp_path)
    assert first.returncode == 0, first.stderr
    run_dir = tmp_path / "runs" / "norm-rewards"
    rows = [json.loads(line) for line in (run_dir / "result.json").read_text().splitlines()]
    # CartPole pays 1 a step: a raw return equals its episode's length (scaled, it would be far less).
    for row in rows:
        assert row["episode_return_mean"] == pytest.approx(row["episode_len_mean"])
    assert _reward_filter(run_dir)["count"] == rows[-1]["timesteps_total"] == 512

    # The resumed run starts from the checkpointed statistics and adds its own steps to them.
    again = kuberl("--set", "stop.iterations=3", cwd=tmp_path)
    assert again.returncode == 0, again.stderr
    assert _reward_filter(run_dir)["count"] == 768

    # Switching it off on resume is refused: the value function learned normalized returns.
    off = kuberl("--set", "stop.iterations=4", "--set", "config.normalizeRewards=false", cwd=tmp_path)
    assert off.returncode == 2, off.stdout + off.stderr
    assert "spec.config.normalizeRewards: changed since" in " ".join(off.stderr.split())
    assert "Traceback" not in off.stderr


@pytest.mark.parametrize(
    ("edits", "reason"),
    [
        (["algorithm=DQN", "config={normalizeRewards: true}"], "DQN does not learn from the env runners"),
        (["output={uri: out}"], "output records raw experience"),
        (["external={enabled: true}"], "normalizeRewards is not supported with external simulators"),
    ],
)
def test_refused_where_it_cannot_apply(tmp_path: Path, edits: list[str], reason: str) -> None:
    (tmp_path / "job.yaml").write_text(JOB.replace("resume: auto", "resume: never"))
    res = kuberl(*[a for e in edits for a in ("--set", e)], cwd=tmp_path)
    assert res.returncode == 2, res.stdout + res.stderr
    message = " ".join(res.stderr.split())
    assert "normalizeRewards" in message, message
    assert reason in message, message
    assert "Traceback" not in res.stderr
    assert not (tmp_path / "runs").exists()  # nothing written


def test_refused_for_offline_input(tmp_path: Path) -> None:
    job = JOB.replace("algorithm: PPO", "algorithm: BC").replace(
        "config: {train_batch_size: 256, minibatch_size: 128, num_epochs: 1, lr: 0.001, normalizeRewards: true}",
        "config: {normalizeRewards: true}\n  input: {uris: [data]}",
    )
    (tmp_path / "job.yaml").write_text(job)
    res = kuberl(cwd=tmp_path)
    assert res.returncode == 2, res.stdout + res.stderr
    message = " ".join(res.stderr.split())
    assert "spec.config: normalizeRewards" in message or "config.normalizeRewards" in message, message
    assert "BC does not learn from the env runners" in message
    assert "Traceback" not in res.stderr
    assert not (tmp_path / "runs").exists()
