"""Bad input through the `kuberl` CLI, as users type it: one message naming the field, exit 2, no
traceback, and nothing written (no run directory, no empty `checkpoints/`). Each case is one that gave a
traceback before (reviews/reliability-2026-12-02.md, M2 and M7)."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from tests.cli import kuberl

ROOT = Path(__file__).resolve().parents[2]
GOOD = """apiVersion: kuberl.io/v1alpha1
kind: RLTrainingJob
metadata: {name: err-test}
spec:
  algorithm: PPO
  env: CartPole-v1
  config: {train_batch_size: 256, minibatch_size: 128, num_epochs: 1}
  stop: {iterations: 1}
  resources: {envRunners: 0, envsPerRunner: 2}
  metrics: {port: 0}
"""


def assert_refused(res: subprocess.CompletedProcess[str], *words: str) -> None:
    flat = " ".join(res.stderr.split())
    assert res.returncode == 2, res.stdout + res.stderr
    assert "Traceback" not in res.stderr, res.stderr
    for w in words:
        assert w in flat, res.stderr


@pytest.mark.parametrize(
    ("sets", "words"),
    [
        # rich markup in error text: the product's own S3 message contains `s3://bucket[/prefix]`
        (["checkpoint.uri=s3://"], ["spec.checkpoint.uri", "s3://"]),
        (["metadata.name=x[/y]"], ["metadata.name", "x[/y]"]),
        (["algorithm=[red]x"], ["spec.algorithm", "unknown algorithm '[red]x'"]),
        (["seed=1208925819614629174706176"], ["spec.seed", "less than or equal to 4294967295"]),
        (["stop.episodeReturnMean=.nan"], ["spec.stop.episodeReturnMean", "finite number"]),
        (["config.lr=.inf"], ["spec.config.lr", "finite number"]),
        (["config.train_batch_size=1000000000000"], ["spec.config.trainBatchSize", "more than 10,000,000"]),
        (
            ["config.model.fcnet_hiddens=[100000, 100000]"],
            ["spec.config.model.fcnet_hiddens[0]", "less than or equal to 8192"],
        ),
        (["resources.envsPerRunner=1000000"], ["spec.resources.envsPerRunner", "4096"]),
        (["config.model.custom_model=nope_mod:Net"], ["spec.config.model.customModel", "nope_mod"]),
        (["config.model.custom_model=os:system"], ["spec.config.model.customModel", "not a torch.nn.Module"]),
        (["config.model.custom_model=tests.envs:ChainEnv"], ["spec.config.model.customModel", "ChainEnv"]),
        (["env=builtins:len"], ["spec.env", "returned int, not a gymnasium.Env"]),
        (
            ["algorithm=DQN", "env=Pendulum-v1", "config={}"],
            ["spec.env", "Box action space", "DQN acts in Discrete"],
        ),
        (["algorithm=SAC", "env=CartPole-v1", "config={}"], []),  # discrete SAC: accepted (control)
        (
            ["algorithm=DQN", "env=kuberl.envs:make_buttons", "config={}"],
            ["spec.env", "MultiDiscrete action space", "DQN acts in Discrete action spaces only"],
        ),  # (PPO accepts it: tests/integration/test_examples.py runs examples/ppo-multidiscrete.yaml)
        (
            ["env=kuberl.envs:make_buttons", "envConfig={action: tuple}", "output.uri=out"],
            ["spec.env", "Tuple action space", "spec.output records Discrete and Box"],
        ),
        (["resume=./no-such-checkpoint"], ["spec.resume"]),
        (["runDir=/proc/kuberl-run"], ["spec.runDir", "cannot create /proc/kuberl-run"]),
        (["runDir=job.yaml"], ["spec.runDir", "exists and is not a directory"]),
    ],
    ids=lambda v: "-".join(v) if isinstance(v, list) else None,
)
def test_refused_with_the_field_and_nothing_written(
    tmp_path: Path, sets: list[str], words: list[str]
) -> None:
    (tmp_path / "job.yaml").write_text(GOOD)
    res = kuberl("run", "job.yaml", "--no-progress", *[a for s in sets for a in ("--set", s)], cwd=tmp_path)
    if not words:  # the control case trains
        assert res.returncode == 0, res.stderr
        return
    assert_refused(res, *words)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["job.yaml"]


def test_gpus_without_cuda(tmp_path: Path) -> None:
    import torch

    if torch.cuda.is_available():
        pytest.skip("this machine has a CUDA device")
    (tmp_path / "job.yaml").write_text(GOOD)
    res = kuberl("run", "job.yaml", "--set", "resources.gpusPerLearner=1", cwd=tmp_path)
    assert_refused(res, "spec.resources.gpusPerLearner", "no CUDA device")
    assert not (tmp_path / "runs").exists()


@pytest.mark.parametrize(
    ("data", "words"),
    [
        (b"spec: \x80\x81garbage\n", "not UTF-8 text"),
        (GOOD.encode("latin-1") + b"# caf\xe9\n", "not UTF-8 text"),
    ],
    ids=["binary", "latin-1"],
)
def test_undecodable_file(tmp_path: Path, data: bytes, words: str) -> None:
    (tmp_path / "job.yaml").write_bytes(data)
    for cmd in ("run", "render"):
        res = kuberl(cmd, "job.yaml", cwd=tmp_path)
        assert_refused(res, "job.yaml", words)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["job.yaml"]


def test_utf16_file_is_read(tmp_path: Path) -> None:
    """Editors on Windows save UTF-16 with a byte-order mark; YAML allows it, and so does kuberl."""
    (tmp_path / "job.yaml").write_bytes(GOOD.encode("utf-16"))
    res = kuberl("render", "job.yaml", cwd=tmp_path)
    assert res.returncode == 0, res.stderr
    assert "kind: RayJob" in res.stdout


def test_metrics_port_in_use_locally_falls_back(tmp_path: Path) -> None:
    """Two local runs with the default port: the second serves its metrics elsewhere and says where."""
    (tmp_path / "job.yaml").write_text(GOOD)
    with socket.socket() as held:
        held.bind(("127.0.0.1", 0))
        held.listen()
        port = held.getsockname()[1]
        res = kuberl("run", "job.yaml", "--no-progress", "--set", f"metrics.port={port}", cwd=tmp_path)
    assert res.returncode == 0, res.stderr
    assert f"metrics port {port} is in use" in res.stderr
    assert "http://127.0.0.1:" in res.stderr


def test_metrics_port_in_use_in_a_pod_is_a_spec_error(tmp_path: Path) -> None:
    (tmp_path / "job.yaml").write_text(GOOD)
    with socket.socket() as held:
        held.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 0)
        held.bind(("0.0.0.0", 0))
        held.listen()
        port = held.getsockname()[1]
        res = kuberl(
            "run", "job.yaml", "--set", f"metrics.port={port}", cwd=tmp_path,
            env={"KUBERNETES_SERVICE_HOST": "10.0.0.1"},
        )  # fmt: skip
    assert_refused(res, "spec.metrics.port", f"cannot listen on 0.0.0.0:{port}")


def test_video_without_moviepy(tmp_path: Path) -> None:
    (tmp_path / "job.yaml").write_text(GOOD)
    assert kuberl("run", "job.yaml", cwd=tmp_path).returncode == 0
    shadow = tmp_path / "shadow" / "moviepy"  # an install without moviepy: its import fails
    shadow.mkdir(parents=True)
    (shadow / "__init__.py").write_text("raise ImportError('No module named moviepy')\n")
    res = kuberl(
        "evaluate", "runs/err-test/checkpoints", "--video", "videos", cwd=tmp_path,
        pythonpath=(str(tmp_path / "shadow"),),
    )  # fmt: skip
    assert_refused(res, "--video", "needs moviepy")
    assert not (tmp_path / "videos").exists()


def test_closed_stdout_still_checkpoints(tmp_path: Path) -> None:
    """`kuberl run … | head -1`: the reader goes away after the first line; training must go on to its
    stop criterion and its final checkpoint, and exit 0."""
    (tmp_path / "job.yaml").write_text(GOOD.replace("iterations: 1", "iterations: 3"))
    path = os.pathsep.join((str(ROOT / "trainer_image"), str(ROOT)))
    proc = subprocess.Popen(
        [sys.executable, "-m", "kuberl.cli", "run", "job.yaml", "--no-progress"],
        cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
        env={**os.environ, "PYTHONPATH": path},
    )  # fmt: skip
    assert proc.stdout is not None
    assert proc.stderr is not None
    proc.stdout.readline()
    proc.stdout.close()
    err = proc.stderr.read().decode()
    assert proc.wait(timeout=300) == 0, err
    assert "Traceback" not in err, err
    assert "Exception ignored" not in err, err
    run = tmp_path / "runs" / "err-test"
    assert len((run / "result.json").read_text().splitlines()) == 3
    assert list((run / "checkpoints").glob("checkpoint_000003/manifest.json"))


def test_train_again_gets_a_fresh_run_directory(tmp_path: Path) -> None:
    """`kuberl train` (resume: never) run twice under one name: two run directories, neither appended to."""
    argv = ("train", "--algo", "PPO", "--env", "CartPole-v1", "--stop-iters", "1", "--no-progress")
    argv += ("--config", '{"train_batch_size": 128, "minibatch_size": 64, "num_epochs": 1}')
    for _ in range(2):
        res = kuberl(*argv, cwd=tmp_path)
        assert res.returncode == 0, res.stderr
    runs = sorted(p.name for p in (tmp_path / "runs").iterdir())
    assert runs == ["ppo-cartpole-v1", "ppo-cartpole-v1-2"]
    for run in runs:
        assert len((tmp_path / "runs" / run / "result.json").read_text().splitlines()) == 1
