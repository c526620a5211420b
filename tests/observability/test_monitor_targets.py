"""The chart's PodMonitor scrapes ports where something listens, on the pods the operator builds (#11:
it used to select worker ports where nothing listened, and Ray's own metrics went unscraped, leaving
the dashboard's GPU panel empty)."""

from __future__ import annotations

from typing import Any

import pytest
import yaml

from kuberl.spec import parse_job
from kuberl_operator.builders import build_config_map, build_ray_job
from tests.helm.conftest import Render
from tests.observability.promql import panel_queries

JOBS: dict[str, dict[str, Any]] = {
    "cpu": {"resources": {"envRunners": 4}},
    "ddp-gpu": {"resources": {"envRunners": 2, "learners": 2, "gpusPerLearner": 1}},
    "metrics-port-8079": {"metrics": {"port": 8079}, "external": {"enabled": True, "insecure": True}},
}


def _job(spec: dict[str, Any]) -> Any:
    return parse_job(
        {
            "apiVersion": "kuberl.io/v1alpha1",
            "kind": "RLTrainingJob",
            "metadata": {"name": "mon", "namespace": "ml"},
            "spec": {"algorithm": "PPO", "env": "CartPole-v1", **spec},
        }
    )


def _pods(manifest: dict[str, Any]) -> dict[str, dict[str, Any]]:
    cluster = manifest["spec"]["rayClusterSpec"]
    head: dict[str, Any] = cluster["headGroupSpec"]
    return {"head": head, **{g["groupName"]: g for g in cluster["workerGroupSpecs"]}}


@pytest.fixture
def pod_monitor(render: Render) -> dict[str, Any]:
    (pm,) = [d for d in render({"metrics": {"podMonitor": {"enabled": True}}}) if d["kind"] == "PodMonitor"]
    return pm


@pytest.mark.parametrize("case", sorted(JOBS))
def test_every_endpoint_port_is_one_something_listens_on(pod_monitor: dict[str, Any], case: str) -> None:
    job = _job(JOBS[case])
    ray_job = build_ray_job(job, attempt=0, resume="auto")
    trainer_port = yaml.safe_load(build_config_map(job)["data"]["job.yaml"])["spec"]["metrics"]["port"]
    endpoints = {e["port"]: e for e in pod_monitor["spec"]["podMetricsEndpoints"]}
    assert set(endpoints) == {"kuberl-metrics", "metrics"}
    selector = pod_monitor["spec"]["selector"]["matchExpressions"]
    assert selector == [{"key": "kuberl.io/job", "operator": "Exists"}]
    for name, group in _pods(ray_job).items():
        template = group["template"]
        assert "kuberl.io/job" in template["metadata"]["labels"], name
        (container,) = template["spec"]["containers"]
        ports = {p["name"]: p["containerPort"] for p in container.get("ports", [])}
        # Ray's exporter listens on metrics-export-port of this group; KubeRay would add a "metrics"
        # port at 8080 to a container without one, where nothing listens.
        assert ports["metrics"] == int(group["rayStartParams"]["metrics-export-port"]), name
        if name == "head":
            # The trainer (the Ray job's driver, on the head) serves /metrics on spec.metrics.port.
            assert ports["kuberl-metrics"] == trainer_port
            assert ports["kuberl-metrics"] != ports["metrics"]
        else:
            assert "kuberl-metrics" not in ports, name  # no trainer on workers: no target


def test_gpu_panel_selects_the_job_through_the_pod_label(pod_monitor: dict[str, Any]) -> None:
    ray = next(e for e in pod_monitor["spec"]["podMetricsEndpoints"] if e["port"] == "metrics")
    relabel = {r["targetLabel"]: r["sourceLabels"] for r in ray["relabelings"]}
    assert relabel["kuberl_job"] == ["__meta_kubernetes_pod_label_kuberl_io_job"]
    (gpu,) = [q for q in panel_queries() if "ray_node_gpus_utilization" in q.expr]
    assert 'kuberl_job="$job"' in gpu.expr
    assert "pod=~" not in gpu.expr  # a name prefix also matched jobs whose names share it
    # The trainer endpoint keeps the trainer's own job/namespace labels.
    trainer = next(e for e in pod_monitor["spec"]["podMetricsEndpoints"] if e["port"] == "kuberl-metrics")
    assert trainer["honorLabels"] is True
