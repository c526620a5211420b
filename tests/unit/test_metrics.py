"""kuberl.metrics: Prometheus series from result dicts, scraped over HTTP from the live server."""

from __future__ import annotations

import json
import math
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from datetime import datetime
from typing import Any

import pytest
import requests
from prometheus_client import CONTENT_TYPE_LATEST
from prometheus_client.parser import text_string_to_metric_families

from kuberl.metrics import MetricsServer, TrainerMetrics

LABELS = {"job": "cartpole", "namespace": "rl", "algorithm": "PPO"}


def make_result(
    iteration: int,
    timesteps: int,
    *,
    episodes: int = 10,
    ret: float | None = 20.0,
    runner_restarts: int = 0,
    env_restarts: int = 0,
    evaluation: bool = False,
) -> dict[str, Any]:
    result: dict[str, Any] = {
        "training_iteration": iteration,
        "timesteps_total": timesteps,
        "num_env_steps_sampled": 100,
        "num_env_steps_trained": 100,
        "num_env_steps_trained_lifetime": timesteps,
        "episodes_total": episodes,
        "episodes_this_iter": 5,
        "episode_return_mean": ret,
        "episode_return_min": None if ret is None else ret - 10,
        "episode_return_max": None if ret is None else ret + 10,
        "episode_len_mean": None if ret is None else ret,
        "time_this_iter_s": 0.7,
        "time_total_s": 0.7 * iteration,
        "env_steps_per_s": 142.0,
        "timers": {"sample": 0.5, "learn": 0.15, "sync_weights": 0.05},
        "learner": {
            "default_policy": {
                "policy_loss": -0.02,
                "vf_loss": 3.5,
                "total_loss": 1.73,
                "entropy": 0.69,
                "kl": 0.01,
                "lr": 3e-4,
                "grad_norm": 0.8,
                "num_minibatches": 4,
            }
        },
        "env_runners": {
            "num_healthy": 2,
            "restarts_total": runner_restarts,
            "env_restarts_total": env_restarts,
        },
    }
    if evaluation:
        result["evaluation"] = {"episode_return_mean": 150.0, "episodes": 5}
    return result


@pytest.fixture
def metrics() -> TrainerMetrics:
    return TrainerMetrics(**LABELS)


@pytest.fixture
def server(metrics: TrainerMetrics) -> Iterator[MetricsServer]:
    srv = MetricsServer(metrics, host="127.0.0.1", port=0)
    srv.start()
    try:
        yield srv
    finally:
        srv.stop()


def url(server: MetricsServer, path: str) -> str:
    return f"http://127.0.0.1:{server.port}{path}"


def scrape(server: MetricsServer) -> dict[str, list[tuple[dict[str, str], float]]]:
    """Scrape /metrics: sample name -> [(labels, value)]."""
    resp = requests.get(url(server, "/metrics"), timeout=5)
    assert resp.status_code == 200
    assert resp.headers["Content-Type"] == CONTENT_TYPE_LATEST
    assert resp.headers["Content-Type"].startswith("text/plain; version=")
    samples: dict[str, list[tuple[dict[str, str], float]]] = {}
    for family in text_string_to_metric_families(resp.text):
        for s in family.samples:
            samples.setdefault(s.name, []).append((dict(s.labels), s.value))
    return samples


def value(samples: dict[str, list[tuple[dict[str, str], float]]], name: str, **labels: str) -> float:
    want = {**LABELS, **labels}
    matches = [v for lbl, v in samples.get(name, []) if lbl == want]
    assert len(matches) == 1, f"{name}{want}: {samples.get(name)}"
    return matches[0]


def test_counters_follow_lifetime_totals(metrics: TrainerMetrics, server: MetricsServer) -> None:
    s = scrape(server)
    # Counters exist at 0 before the first result, so rate() works from the first scrape.
    assert value(s, "kuberl_env_steps_total") == 0
    assert value(s, "kuberl_checkpoints_total") == 0

    metrics.update(make_result(1, 100, episodes=4))
    metrics.update(make_result(2, 250, episodes=9, runner_restarts=1, env_restarts=3))
    s = scrape(server)
    assert value(s, "kuberl_env_steps_total") == 250
    assert value(s, "kuberl_env_steps_trained_total") == 250
    assert value(s, "kuberl_episodes_total") == 9
    assert value(s, "kuberl_env_runner_restarts_total") == 1
    assert value(s, "kuberl_env_restarts_total") == 3
    assert value(s, "kuberl_training_iteration") == 2
    assert value(s, "kuberl_env_runners_healthy") == 2

    # The same result again adds nothing; a total that restarted from zero counts from there.
    metrics.update(make_result(2, 250, episodes=9, runner_restarts=1, env_restarts=3))
    metrics.update(make_result(3, 300, episodes=10, runner_restarts=1, env_restarts=1))
    s = scrape(server)
    assert value(s, "kuberl_env_steps_total") == 300
    assert value(s, "kuberl_env_restarts_total") == 4
    # Iteration 2 seen twice is observed once.
    assert value(s, "kuberl_iteration_duration_seconds_count") == 3


def test_gauges_names_and_labels(metrics: TrainerMetrics, server: MetricsServer) -> None:
    before = time.time()
    metrics.update(make_result(1, 100, evaluation=True))
    s = scrape(server)
    pol = {"policy": "default_policy"}
    assert value(s, "kuberl_episode_return_mean", **pol) == 20.0
    assert value(s, "kuberl_episode_return_min", **pol) == 10.0
    assert value(s, "kuberl_episode_return_max", **pol) == 30.0
    assert value(s, "kuberl_episode_length_mean", **pol) == 20.0
    assert {lbl["term"] for lbl, _ in s["kuberl_learner_loss"]} == {"policy", "vf", "total"}
    assert value(s, "kuberl_learner_loss", term="vf", **pol) == 3.5
    assert value(s, "kuberl_learner_entropy", **pol) == pytest.approx(0.69)
    assert value(s, "kuberl_learner_kl", **pol) == pytest.approx(0.01)
    assert value(s, "kuberl_learner_learning_rate", **pol) == pytest.approx(3e-4)
    assert value(s, "kuberl_learner_grad_norm", **pol) == pytest.approx(0.8)
    assert value(s, "kuberl_timer_seconds", phase="sample") == 0.5
    assert value(s, "kuberl_timer_seconds", phase="sync_weights") == 0.05
    assert value(s, "kuberl_evaluation_return_mean") == 150.0
    assert value(s, "kuberl_iteration_duration_seconds_count") == 1
    assert value(s, "kuberl_iteration_duration_seconds_sum") == pytest.approx(0.7)
    assert value(s, "kuberl_iteration_duration_seconds_bucket", le="1.0") == 1
    assert before - 1 <= value(s, "kuberl_training_start_timestamp_seconds") <= time.time() + 1

    # Every kuberl_ series carries job, namespace and algorithm; no NaN anywhere.
    for name, series in s.items():
        assert name.startswith("kuberl_"), name
        assert not name.endswith("_created"), name
        for lbl, v in series:
            assert {k: lbl[k] for k in LABELS} == LABELS, (name, lbl)
            assert not math.isnan(v), name


def test_none_and_nan_leave_gauges_unset(metrics: TrainerMetrics, server: MetricsServer) -> None:
    result = make_result(1, 100, ret=None)
    result["learner"]["default_policy"]["kl"] = float("nan")
    metrics.update(result)
    s = scrape(server)
    for name in (
        "kuberl_episode_return_mean",
        "kuberl_episode_return_min",
        "kuberl_episode_return_max",
        "kuberl_episode_length_mean",
        "kuberl_learner_kl",
        "kuberl_evaluation_return_mean",
    ):
        assert name not in s, name
    assert metrics.status()["episodeReturnMean"] is None

    # Once a value is known, a later NaN keeps the last finite one instead of exporting NaN.
    metrics.update(make_result(2, 200, ret=12.5))
    metrics.update(make_result(3, 300, ret=float("nan")))
    s = scrape(server)
    assert value(s, "kuberl_episode_return_mean", policy="default_policy") == 12.5
    assert metrics.status()["episodeReturnMean"] == 12.5


def test_missing_optional_keys(metrics: TrainerMetrics, server: MetricsServer) -> None:
    metrics.update({"training_iteration": 1, "timesteps_total": 50})
    metrics.update({})
    metrics.update({"learner": "garbage", "timers": None, "env_runners": [], "evaluation": 3})
    s = scrape(server)
    assert value(s, "kuberl_env_steps_total") == 50
    assert value(s, "kuberl_training_iteration") == 1


def test_multi_policy_learner_stats(metrics: TrainerMetrics, server: MetricsServer) -> None:
    result = make_result(1, 100)
    result["learner"] = {
        "attacker": {"total_loss": 1.0, "entropy": 0.5},
        "defender": {"total_loss": 2.0, "entropy": 0.25},
    }
    result["policies"] = {"attacker": {"episode_return_mean": 3.0}, "defender": {"episode_return_mean": -3.0}}
    metrics.update(result)
    s = scrape(server)
    assert value(s, "kuberl_learner_loss", policy="attacker", term="total") == 1.0
    assert value(s, "kuberl_learner_loss", policy="defender", term="total") == 2.0
    assert value(s, "kuberl_learner_entropy", policy="defender") == 0.25
    assert value(s, "kuberl_episode_return_mean", policy="attacker") == 3.0
    assert value(s, "kuberl_episode_return_mean", policy="defender") == -3.0
    assert value(s, "kuberl_episode_return_mean", policy="__all__") == 20.0  # summed over agents


def test_checkpoint_metrics_and_status(metrics: TrainerMetrics, server: MetricsServer) -> None:
    resp = requests.get(url(server, "/status"), timeout=5)
    assert resp.status_code == 200
    assert resp.headers["Content-Type"] == "application/json"
    status = resp.json()
    assert status["phase"] == "Pending"
    assert status["iteration"] is None
    assert status["lastCheckpoint"] is None

    metrics.set_phase("Running")
    metrics.update(make_result(1, 100, ret=21.5))
    before = time.time()
    metrics.record_checkpoint(duration_s=1.5, success=True, uri="s3://bucket/job/checkpoint_000001")
    metrics.record_checkpoint(duration_s=30.0, success=False, uri="s3://bucket/job/checkpoint_000002")
    s = scrape(server)
    assert value(s, "kuberl_checkpoints_total") == 1
    assert value(s, "kuberl_checkpoint_failures_total") == 1
    assert value(s, "kuberl_checkpoint_duration_seconds_count") == 1
    assert value(s, "kuberl_checkpoint_duration_seconds_sum") == 1.5
    last = value(s, "kuberl_checkpoint_last_success_timestamp_seconds")
    assert before - 1 <= last <= time.time() + 1

    status = requests.get(url(server, "/status"), timeout=5).json()
    assert set(status) == {
        "phase",
        "iteration",
        "timesteps",
        "episodeReturnMean",
        "lastCheckpoint",
        "lastCheckpointTime",
        "checkpointInProgressSeconds",
        "algorithm",
        "job",
        "namespace",
        "updatedAt",
        "customMetrics",
    }
    assert status["customMetrics"] == {}  # no callbacks logged any (tests/unit/test_callbacks.py)
    assert status["phase"] == "Running"
    assert status["iteration"] == 1
    assert status["timesteps"] == 100
    assert status["episodeReturnMean"] == 21.5
    assert status["lastCheckpoint"] == "s3://bucket/job/checkpoint_000001"  # the failed one is not "last"
    assert (status["algorithm"], status["job"], status["namespace"]) == ("PPO", "cartpole", "rl")
    for key in ("lastCheckpointTime", "updatedAt"):
        assert status[key].endswith("Z")
        parsed = datetime.fromisoformat(status[key])
        assert parsed.utcoffset() is not None
        assert abs(parsed.timestamp() - last) < 5

    # A save in progress (a hung store) shows in both places; none running: null and 0.
    assert status["checkpointInProgressSeconds"] is None
    assert value(s, "kuberl_checkpoint_in_progress_seconds") == 0
    metrics.watch_checkpoint(lambda: 42.04)
    assert requests.get(url(server, "/status"), timeout=5).json()["checkpointInProgressSeconds"] == 42.0
    assert value(scrape(server), "kuberl_checkpoint_in_progress_seconds") == 42.04

    metrics.set_phase("Succeeded")
    assert requests.get(url(server, "/status"), timeout=5).json()["phase"] == "Succeeded"
    with pytest.raises(ValueError, match="unknown phase"):
        metrics.set_phase("Exploded")


def test_healthz_404_and_bad_requests(server: MetricsServer) -> None:
    resp = requests.get(url(server, "/healthz"), timeout=5)
    assert (resp.status_code, resp.text) == (200, "ok")
    assert requests.get(url(server, "/nope"), timeout=5).status_code == 404
    assert requests.get(url(server, "/metrics?name[]=x"), timeout=5).status_code == 200
    assert requests.head(url(server, "/status"), timeout=5).status_code == 200
    assert requests.post(url(server, "/metrics"), timeout=5).status_code in (405, 501)

    # Garbage on the socket gets an error reply, and the server keeps serving.
    with socket.create_connection(("127.0.0.1", server.port), timeout=5) as sock:
        sock.sendall(b"\x00\x01 not http at all\r\n\r\n")
        reply = sock.recv(1024)
    assert b"400" in reply
    assert requests.get(url(server, "/healthz"), timeout=5).status_code == 200


def test_two_jobs_do_not_clash() -> None:
    a = TrainerMetrics(job="a", namespace="rl", algorithm="PPO")
    b = TrainerMetrics(job="b", namespace="rl", algorithm="DQN")
    a.update(make_result(1, 100))
    assert a.registry is not b.registry
    assert b'job="a"' in a.exposition()
    assert b'job="a"' not in b.exposition()


def test_server_start_stop_frees_port(metrics: TrainerMetrics) -> None:
    srv = MetricsServer(metrics, host="127.0.0.1", port=0)
    with srv:
        port = srv.port
        assert port != 0
        assert requests.get(f"http://127.0.0.1:{port}/healthz", timeout=5).status_code == 200
    with pytest.raises(requests.ConnectionError):
        requests.get(f"http://127.0.0.1:{port}/healthz", timeout=2)


def test_status_json_is_strict() -> None:
    m = TrainerMetrics(**LABELS)
    m.update(make_result(1, 100, ret=float("inf")))
    text = json.dumps(m.status(), allow_nan=False)
    assert json.loads(text)["episodeReturnMean"] is None


def test_import_is_light() -> None:
    heavy = "{'torch', 'ray', 'tensorboardX', 'matplotlib'}"
    imports = "import sys, kuberl.metrics, kuberl.results, kuberl.plot"
    code = f"{imports}; print(sorted({heavy} & set(sys.modules)))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=True)
    assert out.stdout.strip() == "[]"


def test_policy_lag_of_asynchronous_algorithms_is_exported() -> None:
    from prometheus_client.parser import text_string_to_metric_families

    from kuberl.metrics import TrainerMetrics

    m = TrainerMetrics(job="j", namespace="n", algorithm="APPO")
    m.update(
        {
            "training_iteration": 1,
            "timesteps_total": 10,
            "learner": {"default_policy": {"policy_lag_mean": 3.5}},
        }
    )
    text = m.exposition().decode()
    samples = {
        s.name: s.value
        for f in text_string_to_metric_families(text)
        for s in f.samples
        if s.name.endswith("lag")
    }
    assert samples == {"kuberl_learner_policy_lag": 3.5}


def test_custom_metric_names_are_bounded_and_expire(caplog: pytest.LogCaptureFixture) -> None:
    """spec.metrics.maxCustomMetrics names at a time, one warning for those left out; a name missing
    from customMetricExpiryIterations reports leaves /metrics and /status and frees its place. Results
    without custom metrics (no episode ended) age nothing."""
    metrics = TrainerMetrics(**LABELS, max_custom_metrics=2, custom_metric_expiry=2)
    srv = MetricsServer(metrics, host="127.0.0.1", port=0)
    srv.start()

    def exported() -> dict[str, float]:
        series = scrape(srv).get("kuberl_custom_metric", [])
        assert all({k: lbl[k] for k in LABELS} == LABELS for lbl, _ in series)
        return {f"{lbl['name']}_{lbl['stat']}": v for lbl, v in series}

    def status() -> dict[str, Any]:
        custom: dict[str, Any] = requests.get(url(srv, "/status"), timeout=5).json()["customMetrics"]
        return custom

    try:
        with caplog.at_level("WARNING", logger="kuberl.metrics"):
            metrics.update(
                {"training_iteration": 1, "custom_metrics": {"a_mean": 1.0, "b_mean": 2.0, "c_mean": 3.0}}
            )
            assert exported() == {"a_mean": 1.0, "b_mean": 2.0}  # c: no room
            metrics.update(
                {"training_iteration": 2, "custom_metrics": {"a_mean": 1.5, "c_mean": 3.0, "d_max": 4.0}}
            )
            assert exported() == {
                "a_mean": 1.5,
                "b_mean": 2.0,
            }  # b missed one report: kept, at its last value
            metrics.update({"training_iteration": 3, "custom_metrics": {}})  # no report: nothing ages
            metrics.update({"training_iteration": 4})
            assert exported() == {"a_mean": 1.5, "b_mean": 2.0}
            metrics.update({"training_iteration": 5, "custom_metrics": {"a_mean": 1.7, "c_mean": 3.5}})
            # b missed two reports: gone from both endpoints, and c takes its place in the same report.
            assert exported() == {"a_mean": 1.7, "c_mean": 3.5}
            assert status() == {"a": {"mean": 1.7}, "c": {"mean": 3.5}}
    finally:
        srv.stop()
    warned = [r.getMessage() for r in caplog.records if "not exported to Prometheus" in r.getMessage()]
    assert len(warned) == 1, warned  # c and d were left out, three times: one warning
    assert "'c'" in warned[0]
    assert "spec.metrics.maxCustomMetrics" in warned[0]


def test_max_custom_metrics_zero_exports_none() -> None:
    metrics = TrainerMetrics(**LABELS, max_custom_metrics=0)
    metrics.update({"training_iteration": 1, "custom_metrics": {"a_mean": 1.0}})
    assert b"kuberl_custom_metric{" not in metrics.exposition()
    assert metrics.status()["customMetrics"] == {}
