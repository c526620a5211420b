"""End to end: a real Prometheus scrapes a short real ``kuberl run`` (and the operator's metrics
exporter); every dashboard panel, dashboard variable and alert base expression must return at least
one series, resolved the way Grafana resolves its template variables.

The operator side is the real ``OperatorMetrics`` exporter driven through its public API with a few
synthetic reconciles (running the whole operator needs a Kubernetes API; tests/e2e does that)."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from tests.fixtures.prometheus import PrometheusServer, free_port
from tests.helm.conftest import Render
from tests.helm.tools import REPO_ROOT, tool
from tests.observability.promql import (
    NEEDS_GPU,
    alert_base,
    alert_rules,
    panel_queries,
    substitute,
    variable_queries,
)
from tests.observability.test_rules import RULES_ON

pytestmark = [pytest.mark.integration, pytest.mark.timeout(240)]

DEADLINE_S = 100

OPERATOR_DRIVER = """
import asyncio, sys, time
import kopf
from kuberl_operator.metrics import OperatorMetrics

m = OperatorMetrics()
m.serve(int(sys.argv[1]))
m.set_phase("ml", "ppo-a", "Running")
m.set_phase("ml", "ppo-b", "Failed")
m.retries.labels(namespace="ml").inc()

async def once(handler, exc):
    try:
        async with m.observe(handler):
            if exc is not None:
                raise exc
    except Exception:
        pass

async def main():
    while True:
        for handler in ("create", "update", "sync"):
            await once(handler, None)
        await once("update", kopf.TemporaryError("RayJob conflict"))
        await once("create", kopf.PermanentError("invalid spec"))
        await asyncio.sleep(0.5)

asyncio.run(main())
"""


def start_trainer(port: int, run_dir: Path, log: Path) -> subprocess.Popen[bytes]:
    sets = {
        "metrics.port": port,
        "resources.envRunners": 0,
        # Keep it running until the test has its answers; the test stops it.
        "stop.iterations": 100000,
        "stop.timesteps": 10**9,
        "stop.episodeReturnMean": 10**6,
        "stop.timeSeconds": DEADLINE_S + 20,
        "config.train_batch_size": 512,
        "config.minibatch_size": 128,
        "config.num_epochs": 2,
        "checkpoint.everyIterations": 20,
        "checkpoint.keep": 2,
        "evaluation.interval": 5,
        "evaluation.episodes": 2,
        # The documented example callbacks: the custom-metric panel needs kuberl_custom_metric series.
        "config.callbacks": "examples.callbacks:CartPoleMetrics",
    }
    args = [tool("kuberl"), "run", str(REPO_ROOT / "examples" / "ppo-job.yaml"), "--no-progress",
            "--run-dir", str(run_dir)]  # fmt: skip
    for key, value in sets.items():
        args += ["--set", f"{key}={value}"]
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join(filter(None, (str(REPO_ROOT), os.environ.get("PYTHONPATH")))),
    }
    return subprocess.Popen(
        args, stdout=log.open("wb"), stderr=subprocess.STDOUT, cwd=run_dir.parent, env=env
    )


def stop(proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def resolve_variables(prom: PrometheusServer) -> dict[str, dict[str, str]]:
    """Like Grafana: per dashboard, each label_values() variable takes the first value Prometheus
    returns, in order, so that later variables are filtered by earlier ones. Unresolved ones are absent."""
    chosen: dict[str, dict[str, str]] = {}
    for dash, name, expr, label in variable_queries():
        variables = chosen.setdefault(dash, {})
        try:
            query = substitute(expr, variables)
        except AssertionError:  # depends on an earlier variable with no value yet
            continue
        for series in prom.query(query):
            if label in series["metric"]:
                variables[name] = series["metric"][label]
                break
    return chosen


def dashboard_variables() -> dict[str, set[str]]:
    out: dict[str, set[str]] = {}
    for dash, name, _expr, _label in variable_queries():
        out.setdefault(dash, set()).add(name)
    return out


def test_every_dashboard_query_and_alert_returns_series(
    prometheus_server: Callable[..., PrometheusServer], render: Render, tmp_path: Path
) -> None:
    trainer_port, operator_port = free_port(), free_port()
    (tmp_path / "run").mkdir()
    trainer_log = tmp_path / "trainer.log"
    trainer = start_trainer(trainer_port, tmp_path / "run", trainer_log)
    operator = subprocess.Popen([sys.executable, "-c", OPERATOR_DRIVER, str(operator_port)])
    try:
        prom = prometheus_server([f"127.0.0.1:{trainer_port}", f"127.0.0.1:{operator_port}"])
        alerts = alert_rules(render(RULES_ON))
        queries = [(q.where, q.dashboard, q.expr) for q in panel_queries() if q.panel not in NEEDS_GPU]
        queries += [(f"alert {a['alert']}", "", alert_base(a["expr"])) for a in alerts]
        wanted = dashboard_variables()

        deadline = time.monotonic() + DEADLINE_S
        while True:
            variables = resolve_variables(prom)
            missing = [
                f"variable {d}/{v}" for d, names in wanted.items() for v in names - variables[d].keys()
            ]
            if not missing:
                missing = [w for w, d, e in queries if not prom.query(substitute(e, variables.get(d, {})))]
            if not missing:
                break
            for proc, name in ((trainer, "kuberl run"), (operator, "operator metrics driver")):
                if proc.poll() is not None:
                    pytest.fail(f"{name} exited ({proc.returncode}) early; trainer log:\n"
                                f"{trainer_log.read_text()[-3000:]}")  # fmt: skip
            if time.monotonic() > deadline:
                tail = trainer_log.read_text()[-2000:]
                lines = "\n  ".join(missing)
                pytest.fail(f"no series after {DEADLINE_S}s (variables {variables}):\n  {lines}"
                            + f"\ntrainer log:\n{tail}")  # fmt: skip
            time.sleep(2)
        # The GPU panel is still a valid query on a CPU-only run, just empty.
        for q in panel_queries():
            if q.panel in NEEDS_GPU:
                prom.query(substitute(q.expr, variables[q.dashboard]))
    finally:
        stop(trainer)
        stop(operator)
