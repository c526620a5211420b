"""The Grafana dashboards: round trip through grafana-foundation-sdk without losing keys, and the
panels the issue asks for are there, filtered by the namespace and job variables."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from tests.observability.promql import DASHBOARDS, load_dashboard, panel_queries


def lost_keys(original: Any, back: Any, path: str = "") -> list[str]:
    if isinstance(original, dict):
        if not isinstance(back, dict):
            return [path or "/"]
        out = []
        for key, value in original.items():
            if key not in back:
                out.append(f"{path}/{key}")
            else:
                out += lost_keys(value, back[key], f"{path}/{key}")
        return out
    if isinstance(original, list):
        if not isinstance(back, list) or len(back) != len(original):
            return [path]
        return [
            k
            for i, (a, b) in enumerate(zip(original, back, strict=True))
            for k in lost_keys(a, b, f"{path}[{i}]")
        ]
    return [] if original == back else [f"{path} ({original!r} -> {back!r})"]


@pytest.mark.parametrize("path", DASHBOARDS, ids=lambda p: p.stem)
def test_round_trips_through_grafana_foundation_sdk(path: Path) -> None:
    from grafana_foundation_sdk.cog.encoder import JSONEncoder
    from grafana_foundation_sdk.models.dashboard import Dashboard

    original = load_dashboard(path)
    back = json.loads(JSONEncoder().encode(Dashboard.from_json(original)))
    assert not lost_keys(original, back)


def test_training_dashboard_covers_the_job() -> None:
    dash = load_dashboard(next(p for p in DASHBOARDS if p.stem == "training"))
    names = [v["name"] for v in dash["templating"]["list"]]
    assert names == ["datasource", "namespace", "job", "custom_metric"]
    exprs = " ".join(q.expr for q in panel_queries() if q.where.startswith(dash["title"]))
    for metric in ("kuberl_episode_return_mean", "kuberl_episode_length_mean", "kuberl_env_steps_total",
                   "kuberl_env_steps_trained_total", "kuberl_learner_loss", "kuberl_learner_entropy",
                   "kuberl_learner_kl", "kuberl_learner_learning_rate",
                   "kuberl_checkpoint_last_success_timestamp",
                   "kuberl_checkpoint_duration_seconds_bucket", "kuberl_env_runner_restarts_total",
                   "ray_node_gpus_utilization", "kuberl_custom_metric"):  # fmt: skip
        assert metric in exprs, metric
    for q in panel_queries():
        if q.where.startswith(dash["title"]) and "kuberl_" in q.expr and "ray_" not in q.expr:
            assert 'namespace="$namespace", job="$job"' in q.expr, q.where
        elif q.where.startswith(dash["title"]):  # Ray's series: the job is the pod's label, relabelled
            assert 'namespace="$namespace", kuberl_job="$job"' in q.expr, q.where


def test_custom_metrics_get_one_panel_each() -> None:
    """config.callbacks' custom metrics: a panel repeated per name of the job's kuberl_custom_metric."""
    dash = load_dashboard(next(p for p in DASHBOARDS if p.stem == "training"))
    [var] = [v for v in dash["templating"]["list"] if v["name"] == "custom_metric"]
    assert var["query"]["query"].startswith("label_values(kuberl_custom_metric{")
    assert var["includeAll"]
    [panel] = [p for p in dash["panels"] if p.get("repeat") == "custom_metric"]
    assert 'name=~"$custom_metric"' in panel["targets"][0]["expr"]


def test_operator_dashboard_covers_the_operator() -> None:
    dash = load_dashboard(next(p for p in DASHBOARDS if p.stem == "operator"))
    exprs = " ".join(q.expr for q in panel_queries() if q.where.startswith(dash["title"]))
    for metric in ("kuberl_operator_jobs", "kuberl_operator_reconciles_total",
                   "kuberl_operator_reconcile_duration_seconds_bucket"):  # fmt: skip
        assert metric in exprs, metric


def test_panels_are_well_formed() -> None:
    for path in DASHBOARDS:
        dash = load_dashboard(path)
        ids = [p["id"] for p in dash["panels"]]
        assert len(set(ids)) == len(ids), path.name
        for panel in dash["panels"]:
            assert panel["datasource"] == {"type": "prometheus", "uid": "${datasource}"}, panel["title"]
            assert panel["targets"], panel["title"]
