"""Resume through `kuberl run`, as the operator's retries do (`resume: auto` in the pod): edited
hyperparameters take effect, edits to what the saved state depends on are refused naming the field."""

from __future__ import annotations

import json
from functools import partial
from pathlib import Path

from tests import cli

ROOT = Path(__file__).resolve().parents[2]
JOB = """apiVersion: kuberl.io/v1alpha1
kind: RLTrainingJob
metadata: {name: resume-test}
spec:
  algorithm: PPO
  env: CartPole-v1
  config: {train_batch_size: 256, minibatch_size: 128, num_epochs: 1, lr: 0.001}
  stop: {iterations: 2}
  resources: {envRunners: 0, envsPerRunner: 2}
  checkpoint: {everyIterations: 1}
  resume: auto
  metrics: {port: 0}
"""


# Every run here is `kuberl run job.yaml` of the one job, with --set edits.
kuberl = partial(cli.kuberl, "run", "job.yaml", "--no-progress")


def results(cwd: Path) -> list[dict]:
    lines = (cwd / "runs" / "resume-test" / "result.json").read_text().splitlines()
    return [json.loads(line) for line in lines]


def test_resume_applies_hyperparameters_and_refuses_shape_changes(tmp_path: Path) -> None:
    (tmp_path / "job.yaml").write_text(JOB)
    first = kuberl(cwd=tmp_path)
    assert first.returncode == 0, first.stderr
    assert [r["learner"]["default_policy"]["lr"] for r in results(tmp_path)] == [0.001, 0.001]

    more = kuberl("--set", "stop.iterations=3", "--set", "config.lr=0.01", cwd=tmp_path)
    assert more.returncode == 0, more.stderr
    assert "resumed from" in more.stdout
    rows = results(tmp_path)
    assert [r["training_iteration"] for r in rows] == [1, 2, 3]
    assert rows[-1]["learner"]["default_policy"]["lr"] == 0.01  # the edit took effect
    params = json.loads((tmp_path / "runs" / "resume-test" / "params.json").read_text())
    assert params["spec"]["config"]["lr"] == 0.01

    for edits, field in [
        (["config.model.fcnet_hiddens=[32]"], "spec.config.model"),
        (["algorithm=A2C", "config={train_batch_size: 256}"], "spec.algorithm"),
        (["config.observation_filter=MeanStdFilter"], "spec.config.observationFilter"),
    ]:
        res = kuberl("--set", "stop.iterations=4", *[a for e in edits for a in ("--set", e)], cwd=tmp_path)
        assert res.returncode == 2, res.stdout + res.stderr
        assert "Traceback" not in res.stderr
        assert f"{field}: changed since" in " ".join(res.stderr.split()), res.stderr
    assert len(results(tmp_path)) == 3  # refused runs wrote nothing


def test_iterations_redone_after_a_crash_appear_once(tmp_path: Path) -> None:
    """An attempt that logged iteration 3 but died before checkpointing it (no save at the end here, as
    after a SIGKILL): the retry resumes from iteration 2's checkpoint and redoes 3; result.json has each
    iteration once, and TensorBoard is told to purge the first attempt's events past that checkpoint."""
    (tmp_path / "job.yaml").write_text(JOB.replace("everyIterations: 1", "everyIterations: 2, atEnd: false"))
    first = kuberl("--set", "stop.iterations=3", cwd=tmp_path)
    assert first.returncode == 0, first.stderr
    assert [r["training_iteration"] for r in results(tmp_path)] == [1, 2, 3]
    retry = kuberl("--set", "stop.iterations=4", cwd=tmp_path)
    assert retry.returncode == 0, retry.stderr
    assert "checkpoint_000002" in retry.stdout
    rows = results(tmp_path)
    assert [r["training_iteration"] for r in rows] == [1, 2, 3, 4]
    steps = [r["timesteps_total"] for r in rows]
    assert steps == sorted(steps)
    assert len(list((tmp_path / "runs" / "resume-test").glob("events.out.tfevents.*"))) >= 2


def test_a_resume_that_already_meets_its_stop_trains_no_further(tmp_path: Path) -> None:
    """A retry after the final checkpoint (or a re-run of a finished job) ends at once: it used to
    train one iteration past `stop.iterations` before checking it."""
    (tmp_path / "job.yaml").write_text(JOB)
    assert kuberl(cwd=tmp_path).returncode == 0
    store = tmp_path / "runs" / "resume-test" / "checkpoints"
    before = sorted(p.name for p in store.glob("checkpoint_*"))
    again = kuberl(cwd=tmp_path)
    assert again.returncode == 0, again.stderr
    assert "resumed from" in again.stdout
    assert "done: iterations 2 ≥ 2" in again.stdout
    assert [r["training_iteration"] for r in results(tmp_path)] == [1, 2]
    assert sorted(p.name for p in store.glob("checkpoint_*")) == before
