"""The `kuberl` CLI as a user runs it: every bad input gives one clear message, exit 2, nothing written."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from tests.cli import kuberl
from tests.fixtures.s3 import DUMMY_CREDENTIALS

ROOT = Path(__file__).resolve().parents[2]
GOOD = """apiVersion: kuberl.io/v1alpha1
kind: RLTrainingJob
metadata: {name: cli-test}
spec:
  algorithm: PPO
  env: CartPole-v1
  config: {train_batch_size: 512, minibatch_size: 128, num_epochs: 2}
  stop: {iterations: 2}
  resources: {envRunners: 0, envsPerRunner: 4}
  metrics: {port: 0}
"""


@pytest.mark.parametrize(
    ("edit", "words"),
    [
        (["--set", "algorithm=NotAnAlgo"], "spec.algorithm: unknown algorithm 'NotAnAlgo'"),
        (["--set", "env=NoSuchEnv-v0"], "spec.env: 'NoSuchEnv-v0' is not a registered Gymnasium environment"),
        (["--set", "config.lr=fast"], "spec.config.lr: Input should be a valid number"),
        (["--set", "config.not_a_field=1"], "spec.config.not_a_field: unknown field"),
        (["--set", "resources.envRunners=many"], "spec.resources.envRunners"),
        (["--set", "env=tests.envs:no_such_factory"], "has no attribute 'no_such_factory'"),
        (["--set", "metrics.maxCustomMetrics=-1"], "spec.metrics.maxCustomMetrics: Input should be greater"),
    ],
)
def test_bad_spec_fields(tmp_path: Path, edit: list[str], words: str) -> None:
    (tmp_path / "job.yaml").write_text(GOOD)
    res = kuberl("run", "job.yaml", *edit, cwd=tmp_path)  # tests.cli puts this checkout and its root first
    assert res.returncode == 2, res.stderr
    assert words in " ".join(res.stderr.split()), res.stderr
    assert "Traceback" not in res.stderr
    assert not (tmp_path / "runs").exists()


def test_set_replaces_a_snake_case_key_in_any_spelling() -> None:
    """`--set config.model.useLstm=false` on an example written in snake_case (`use_lstm: true`) sets
    that key instead of adding a second one (which the model refused as an unknown field), and so do an
    RLlib alias (numSgdIter for num_epochs) and the alias of lambda_."""
    sets = ["config.model.useLstm=false", "config.numSgdIter=2", "config.lambda=0.9"]
    res = kuberl(
        "convert", "examples/ppo-lstm-recall.yaml", *[a for s in sets for a in ("--set", s)], cwd=ROOT
    )
    assert res.returncode == 0, res.stderr
    config = yaml.safe_load(res.stdout)["spec"]["config"]
    assert config["model"]["useLstm"] is False
    assert (config["numEpochs"], config["lambda"]) == (2, 0.9)
    # `kuberl run` reads the file the same way: the bad value is refused by its name, not as a duplicate.
    res = kuberl("run", "examples/ppo-lstm-recall.yaml", "--set", "config.model.maxSeqLen=0", cwd=ROOT)
    assert res.returncode == 2, res.stderr
    assert "spec.config.model.max_seq_len: Input should be greater than or equal to 1" in res.stderr
    assert "unknown field" not in res.stderr
    assert "Traceback" not in res.stderr


def test_malformed_yaml(tmp_path: Path) -> None:
    (tmp_path / "job.yaml").write_text("spec: {algorithm: PPO\n")
    res = kuberl("run", "job.yaml", cwd=tmp_path)
    assert res.returncode == 2
    assert "malformed YAML" in res.stderr
    assert not (tmp_path / "runs").exists()


def test_missing_file(tmp_path: Path) -> None:
    res = kuberl("run", "nope.yaml", cwd=tmp_path)
    assert res.returncode == 2
    assert "cannot read nope.yaml" in res.stderr


def run_with_s3_checkpoints(tmp_path: Path, *, endpoint: str) -> subprocess.CompletedProcess[str]:
    """`kuberl run` on GOOD checkpointing to s3://no-such-bucket/ckpt, against the S3 `endpoint` with
    dummy credentials."""
    (tmp_path / "job.yaml").write_text(GOOD)
    env = {"AWS_ENDPOINT_URL": endpoint, **DUMMY_CREDENTIALS}
    return kuberl(
        "run", "job.yaml", "--set", "checkpoint.uri=s3://no-such-bucket/ckpt", cwd=tmp_path, env=env
    )


def test_unreachable_s3_endpoint_exits_75(tmp_path: Path) -> None:
    """An S3 endpoint that does not answer may be briefly down: exit 75 (the operator retries), not 2
    (bad input, never retried); nothing written."""
    res = run_with_s3_checkpoints(tmp_path, endpoint="http://127.0.0.1:9")  # nothing listens on port 9
    assert res.returncode == 75, res.stderr
    assert "spec.checkpoint.uri" in res.stderr
    assert "s3://no-such-bucket" in res.stderr
    assert "unreachable" in res.stderr
    assert "Traceback" not in res.stderr
    assert not (tmp_path / "runs").exists()


def test_missing_s3_bucket_exits_2(tmp_path: Path, moto_server: str) -> None:
    """A bucket the (reachable) endpoint does not have is bad input: exit 2 naming the field, nothing written."""
    res = run_with_s3_checkpoints(tmp_path, endpoint=moto_server)
    assert res.returncode == 2, res.stderr
    assert "spec.checkpoint.uri" in res.stderr
    assert "does not exist" in res.stderr
    assert not (tmp_path / "runs").exists()


def test_train_quick_start_bad_json(tmp_path: Path) -> None:
    res = kuberl("train", "--algo", "PPO", "--env", "CartPole-v1", "--config", "{lr: 1", cwd=tmp_path)
    assert res.returncode == 2
    assert "--config: not valid JSON" in res.stderr


def test_run_then_evaluate_then_plot(tmp_path: Path) -> None:
    (tmp_path / "job.yaml").write_text(GOOD)
    res = kuberl("run", "job.yaml", cwd=tmp_path)
    assert res.returncode == 0, res.stderr
    run = tmp_path / "runs" / "cli-test"
    lines = (run / "result.json").read_text().splitlines()
    assert [json.loads(x)["training_iteration"] for x in lines] == [1, 2]
    assert json.loads((run / "params.json").read_text())["spec"]["algorithm"] == "PPO"
    assert list(run.glob("events.out.tfevents.*"))
    ckpt = run / "checkpoints"
    ev = kuberl("evaluate", str(ckpt), "--episodes", "3", cwd=tmp_path)
    assert ev.returncode == 0, ev.stderr
    stats = json.loads(ev.stdout)
    assert stats["episodes"] == 3
    assert stats["iteration"] == 2
    pl = kuberl("plot", str(run), cwd=tmp_path)
    assert pl.returncode == 0, pl.stderr
    assert (run / "learning_curve.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_no_ray_without_env_runners_and_video(tmp_path: Path) -> None:
    """envRunners: 0 trains without importing Ray at all; evaluate --video writes MP4s."""
    (tmp_path / "job.yaml").write_text(GOOD)
    code = (
        "import sys; from kuberl.cli import main; rc = main(['run', 'job.yaml', '--no-progress']);"
        "print('RAY_LOADED' if 'ray' in sys.modules else 'NO_RAY'); sys.exit(rc)"
    )
    res = subprocess.run(
        [sys.executable, "-c", code],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=240,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
    )
    assert res.returncode == 0, res.stderr
    assert "NO_RAY" in res.stdout
    ev = kuberl(
        "evaluate",
        str(tmp_path / "runs" / "cli-test" / "checkpoints"),
        "--episodes",
        "1",
        "--video",
        str(tmp_path / "videos"),
        cwd=tmp_path,
    )
    assert ev.returncode == 0, ev.stderr
    videos = list((tmp_path / "videos").glob("*.mp4"))
    assert videos
    assert videos[0].stat().st_size > 1000
