"""config.callbacks end to end (docs/callbacks.md): the documented example's callbacks count steps and
log custom metrics, which must reach result.json, the TensorBoard event file, /metrics and /status
(both scraped over HTTP from the trainer's own server while it runs), with env-runner actors and with
in-driver sampling, single- and multi-agent; a callback that raises fails `kuberl run` naming itself."""

from __future__ import annotations

import json
import os
import socket
import struct
import subprocess
import sys
import urllib.request
from pathlib import Path
from typing import Any

import pytest
import yaml

from kuberl.core.callbacks import CallbackError, callback_error_of
from kuberl.results import read_results
from kuberl.spec import parse_job
from kuberl.trainer import run_job

ROOT = Path(__file__).resolve().parents[2]
pytestmark = pytest.mark.integration


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def job_of(example: str, tmp_path: Path, *, config: dict[str, Any] | None = None, **spec: Any) -> Any:
    doc = yaml.safe_load((ROOT / "examples" / example).read_text())
    doc["spec"].update({"runDir": str(tmp_path / "run"), "metrics": {"port": free_port()}, **spec})
    # CI-sized: small batches, one epoch (what is checked is where the metrics go, not learning).
    doc["spec"]["config"].update(
        {"train_batch_size": 400, "minibatch_size": 200, "num_epochs": 1, **(config or {})}
    )
    return parse_job(doc)


def get(url: str) -> str:
    with urllib.request.urlopen(url, timeout=10) as resp:
        return resp.read().decode()


def train_and_scrape(job: Any) -> tuple[list[dict[str, Any]], str, dict[str, Any]]:
    """Run the job through the trainer; after its last iteration scrape /metrics and /status over HTTP
    from the trainer's own server (it stops with the run)."""
    scraped: dict[str, Any] = {}
    port = job.spec.metrics.port

    def on_result(result: Any) -> None:
        scraped["metrics"] = get(f"http://127.0.0.1:{port}/metrics")
        scraped["status"] = json.loads(get(f"http://127.0.0.1:{port}/status"))

    run_job(job, on_result=on_result)
    return read_results(job.spec.run_dir), scraped["metrics"], scraped["status"]


def tensorboard_tags(run_dir: Path) -> dict[str, str]:
    """tag → "scalar" | "histogram" from the run's event files (TFRecord framing, tensorboardX's proto)."""
    from tensorboardX.proto import event_pb2

    tags: dict[str, str] = {}
    for path in run_dir.glob("events.out.tfevents.*"):
        data = path.read_bytes()
        pos = 0
        while pos + 12 <= len(data):
            (length,) = struct.unpack("<Q", data[pos : pos + 8])
            event = event_pb2.Event.FromString(data[pos + 12 : pos + 12 + length])
            pos += 12 + length + 4
            for value in event.summary.value:
                tags[value.tag] = "histogram" if value.HasField("histo") else "scalar"
    return tags


@pytest.mark.parametrize("runners", [1, 0], ids=["env-runner-actors", "in-driver"])
def test_custom_metrics_reach_every_sink(
    runners: int, tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    if runners:
        request.getfixturevalue("ray_session")  # the session's Ray, shared with the other Ray tests
    job = job_of(
        "ppo-callbacks.yaml",
        tmp_path,
        stop={"iterations": 2},
        resources={"envRunners": runners, "envsPerRunner": 4, "localMode": "actors" if runners else "auto"},
    )
    results, metrics, status = train_and_scrape(job)
    last = results[-1]
    cm = last["custom_metrics"]
    hist = last["hist_stats"]
    # The callback counted every step of every episode that ended this iteration: its count is the
    # episode length kuberl measured itself, episode by episode.
    assert hist["steps_counted"] == hist["episode_lengths"]
    assert len(hist["episode_return"]) == last["episodes_this_iter"] > 0
    lengths = hist["episode_lengths"]
    assert cm["steps_counted_mean"] == pytest.approx(sum(lengths) / len(lengths))
    assert (cm["steps_counted_min"], cm["steps_counted_max"]) == (min(lengths), max(lengths))
    assert cm["steps_seen_max_max"] == max(lengths)  # log_value(reduce="max") per episode
    assert last["callbacks_ok"] == 1  # on_train_result ran in the driver

    tags = tensorboard_tags(tmp_path / "run")
    assert tags["custom_metrics/steps_counted_mean"] == "scalar"
    assert tags["hist_stats/steps_counted"] == "histogram"
    assert tags["hist_stats/episode_return"] == "histogram"

    line = next(
        ln for ln in metrics.splitlines() if ln.startswith("kuberl_custom_metric{") and 'stat="mean"' in ln
        and 'name="steps_counted"' in ln
    )  # fmt: skip
    assert float(line.rsplit(" ", 1)[1]) == pytest.approx(cm["steps_counted_mean"])
    assert status["customMetrics"]["steps_counted"]["max"] == cm["steps_counted_max"]


def test_multi_agent_hooks_see_agents_and_policies(tmp_path: Path) -> None:
    job = job_of(
        "ma-coop-two-policies.yaml",
        tmp_path,
        config={"callbacks": "examples.callbacks:TeamMetrics"},
        stop={"iterations": 1},
        resources={"envRunners": 0, "envsPerRunner": 4},
    )
    results, _, status = train_and_scrape(job)
    cm = results[-1]["custom_metrics"]
    mapping = {
        key.removeprefix("reward_").removesuffix("_mean")
        for key in cm
        if key.startswith("reward_") and key.endswith("_mean")
    }
    # policyMapping: agent_0 → left, agent_1 → right; each agent's reward under its own policy id.
    assert mapping == {"agent_0_left", "agent_1_right"}, cm
    assert cm["agents_mean"] == 2
    assert "agents" in status["customMetrics"]


def test_a_raising_callback_in_an_env_runner_actor_reaches_the_driver(
    tmp_path: Path, ray_session: None
) -> None:
    """Ray wraps what an actor raised; the driver still gets the CallbackError and its message."""
    job = job_of(
        "ppo-callbacks.yaml",
        tmp_path,
        config={"callbacks": "examples.callbacks:FailingCallbacks"},
        resources={"envRunners": 1, "envsPerRunner": 4, "localMode": "actors"},
    )
    with pytest.raises(CallbackError) as info:
        run_job(job)
    failed = callback_error_of(info.value)
    assert failed is not None
    assert failed.message.startswith(
        "spec.config.callbacks: examples.callbacks:FailingCallbacks.on_episode_end"
    )


def test_a_raising_callback_fails_the_run_naming_it(tmp_path: Path) -> None:
    path = os.pathsep.join((str(ROOT / "trainer_image"), str(ROOT / "operator"), str(ROOT)))
    res = subprocess.run(
        [sys.executable, "-m", "kuberl.cli", "run", str(ROOT / "examples" / "ppo-callbacks.yaml"),
         "--set", "config.callbacks=examples.callbacks:FailingCallbacks", "--set", "metrics.port=0",
         "--set", "resources.envRunners=0", "--set", "config.train_batch_size=400",
         "--set", "config.minibatch_size=200", "--run-dir", "run", "--no-progress"],
        cwd=tmp_path, capture_output=True, text=True, timeout=300, env={**os.environ, "PYTHONPATH": path},
    )  # fmt: skip
    assert res.returncode == 70, res.stderr
    assert "examples.callbacks:FailingCallbacks.on_episode_end raised ValueError: episode" in res.stderr
    assert "examples/callbacks.py" in res.stderr  # the callback's own frame
    assert "Traceback" not in res.stderr, res.stderr


def test_a_callback_that_does_not_import_is_refused_before_training(tmp_path: Path) -> None:
    path = os.pathsep.join((str(ROOT / "trainer_image"), str(ROOT / "operator"), str(ROOT)))
    res = subprocess.run(
        [sys.executable, "-m", "kuberl.cli", "run", str(ROOT / "examples" / "ppo-callbacks.yaml"),
         "--set", "config.callbacks=examples.callbacks:Missing", "--run-dir", "run"],
        cwd=tmp_path, capture_output=True, text=True, timeout=300, env={**os.environ, "PYTHONPATH": path},
    )  # fmt: skip
    assert res.returncode == 2, res.stderr
    assert "spec.config.callbacks" in res.stderr
    assert "Missing" in res.stderr
    assert not (tmp_path / "run").exists()
