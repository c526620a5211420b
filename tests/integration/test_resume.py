"""Checkpoints under failure: SIGKILL then resume (local and S3), Ctrl-C saves, a dead runner is recreated."""

from __future__ import annotations

import json
import signal
import subprocess
import time
from pathlib import Path
from typing import Any

import pytest
import yaml

from kuberl.build import build_algorithm
from kuberl.checkpoint import open_store
from tests.cli import cli_command, cli_env
from tests.fixtures import jobs


def job_doc(ckpt_uri: str, *, every: int = 2, iterations: int = 200, runners: int = 0) -> dict[str, Any]:
    return jobs.job_doc(
        "PPO",
        "CartPole-v1",
        seed=None,
        name="resume-test",
        config={"train_batch_size": 512, "minibatch_size": 128, "num_epochs": 2},
        runners=runners,
        stop={"iterations": iterations},
        checkpoint={"uri": ckpt_uri, "everyIterations": every, "keep": 2},
        metrics={"port": 0},
    )


def start(tmp_path: Path, doc: dict[str, Any], *extra: str) -> subprocess.Popen[str]:
    (tmp_path / "job.yaml").write_text(yaml.safe_dump(doc))
    return subprocess.Popen(
        cli_command("run", "job.yaml", "--no-progress", *extra),
        cwd=tmp_path,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=cli_env(),
    )


def wait_for_checkpoint(uri: str, at_least: int, proc: subprocess.Popen[str], timeout: float = 120) -> int:
    deadline = time.time() + timeout
    while time.time() < deadline:
        assert proc.poll() is None, proc.communicate()
        infos = open_store(uri).list()
        if infos and infos[-1].iteration >= at_least:
            return infos[-1].iteration
        time.sleep(0.2)
    raise AssertionError("no checkpoint in time")


def kill_then_resume(tmp_path: Path, uri: str) -> None:
    proc = start(tmp_path, job_doc(uri))
    wait_for_checkpoint(uri, 4, proc)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    latest = open_store(uri).list()[-1]
    done_iters = latest.iteration
    # Continue from that checkpoint: two more iterations, not from zero.
    res = subprocess.run(
        cli_command(
            "run",
            "job.yaml",
            "--no-progress",
            "--set",
            f"stop.iterations={done_iters + 2}",
            "--set",
            "checkpoint.everyIterations=0",
        ),
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=240,
        env=cli_env(),
    )
    assert res.returncode == 0, res.stderr
    assert f"resumed from {latest.uri}" in " ".join(res.stdout.split())
    results = [
        json.loads(x)
        for x in (tmp_path / "runs" / "resume-test" / "result.json").read_text().splitlines()
        if x.strip()
    ]
    after = [r for r in results if r["training_iteration"] > done_iters]
    assert [r["training_iteration"] for r in after][-2:] == [done_iters + 1, done_iters + 2]
    # timesteps continue from the checkpoint's count
    assert after[-2]["timesteps_total"] == latest.timesteps + after[-2]["num_env_steps_sampled"]
    final = open_store(uri).list()
    assert final[-1].iteration == done_iters + 2
    assert len(final) <= 2  # keep: 2


def test_sigkill_then_resume_local(tmp_path: Path) -> None:
    kill_then_resume(tmp_path, str(tmp_path / "ckpt"))


@pytest.mark.integration
def test_sigkill_then_resume_from_s3(tmp_path: Path, s3_bucket: str) -> None:
    kill_then_resume(tmp_path, s3_bucket)


def test_ctrl_c_saves_a_checkpoint_and_exits_cleanly(tmp_path: Path) -> None:
    uri = str(tmp_path / "ckpt")
    proc = start(tmp_path, job_doc(uri, every=0))
    deadline = time.time() + 120
    results = tmp_path / "runs" / "resume-test" / "result.json"
    while not (results.exists() and results.read_text().count("\n") >= 2):
        assert time.time() < deadline
        assert proc.poll() is None
        time.sleep(0.1)
    proc.send_signal(signal.SIGINT)
    out, err = proc.communicate(timeout=120)
    assert proc.returncode == 130, err
    assert "Traceback" not in err
    assert "interrupted" in out
    infos = open_store(uri).list()
    assert len(infos) == 1
    assert infos[0].iteration >= 2


@pytest.mark.usefixtures("ray_session")
def test_killed_env_runner_is_recreated_and_training_completes(tmp_path: Path) -> None:
    algo = build_algorithm(job_doc(str(tmp_path / "ckpt"), runners=2))
    try:
        algo.train()
        algo.runners.kill_runner_for_test(0)
        for _ in range(3):
            result = algo.train()
        assert result["training_iteration"] == 4
        assert result["env_runners"]["restarts_total"] == 1
        assert result["env_runners"]["num_healthy"] == 2
        assert result["num_env_steps_sampled"] == 512
    finally:
        algo.stop()
