"""The Helm chart: lint, render per values scenario, validate every object offline, and check the
properties a platform team relies on (schema strictness, least-privilege RBAC, hardened pods)."""

from __future__ import annotations

import filecmp
import json
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.helm.conftest import Render, write_values
from tests.helm.tools import CHART_DIR, REPO_ROOT, run, tool

MONITORS_ON = {
    "metrics": {
        "serviceMonitor": {"enabled": True, "labels": {"release": "kube-prometheus-stack"}},
        "podMonitor": {"enabled": True},
        "prometheusRule": {"enabled": True, "alertLabels": {"team": "ml-platform"}},
    }
}
SCENARIOS: dict[str, dict[str, Any]] = {
    "defaults": {},
    "namespaced": {"watch": {"namespaces": ["team-a", "team-b"]}, "replicaCount": 2},
    "monitors": MONITORS_ON,
    "namespaced-monitors": {"watch": {"namespaces": ["team-a"]}, **MONITORS_ON},
}
PROMETHEUS_OPERATOR_KINDS = {"ServiceMonitor", "PodMonitor", "PrometheusRule"}


def by_kind(docs: list[dict[str, Any]], kind: str) -> list[dict[str, Any]]:
    return [d for d in docs if d["kind"] == kind]


@pytest.mark.parametrize("scenario", sorted(SCENARIOS))
def test_lint_strict(helm: str, chart: Path, tmp_path: Path, scenario: str) -> None:
    run([helm, "lint", "--strict", str(chart), "-f", str(write_values(tmp_path, SCENARIOS[scenario]))])


@pytest.mark.parametrize("scenario", sorted(SCENARIOS))
def test_rendered_objects_are_valid(render: Render, tmp_path: Path, scenario: str) -> None:
    docs = render(SCENARIOS[scenario])
    # The CRD is checked once, in test_crd_is_valid, so that a CRD problem is reported on its own.
    builtin = [d for d in docs if d["kind"] not in PROMETHEUS_OPERATOR_KINDS | {"CustomResourceDefinition"}]
    kubernetes_validate(builtin, tmp_path)
    validate_prometheus_operator_objects([d for d in docs if d["kind"] in PROMETHEUS_OPERATOR_KINDS])


def kubernetes_validate(docs: list[dict[str, Any]], tmp_path: Path) -> None:
    """kubernetes-validate checks built-in kinds against the Kubernetes 1.32 OpenAPI schemas, strictly."""
    path = tmp_path / "objects.yaml"
    path.write_text(yaml.safe_dump_all(docs))
    out = run([tool("kubernetes-validate"), "-k", "1.32.0", "--strict", str(path)], timeout=120)
    assert "ERROR" not in out.stdout, out.stdout


def test_crd_is_valid(render: Render, tmp_path: Path) -> None:
    kubernetes_validate(by_kind(render(), "CustomResourceDefinition"), tmp_path)


def validate_prometheus_operator_objects(docs: list[dict[str, Any]]) -> None:
    """Typed models (cloudcoil) for the CRD kinds kubernetes-validate skips. The models accept unknown
    keys, so a round trip must give the input back: a dropped key is a typo or a wrong nesting."""
    from cloudcoil.models.prometheus_operator import v1

    for doc in docs:
        model = getattr(v1, doc["kind"]).model_validate(doc)
        back = model.model_dump(by_alias=True, exclude_unset=True, mode="json")
        assert back == doc, f"{doc['kind']} {doc['metadata']['name']}: keys lost in the typed model"


def test_monitors_select_the_right_targets(render: Render) -> None:
    docs = render(MONITORS_ON)
    (pm,) = by_kind(docs, "PodMonitor")
    assert pm["spec"]["selector"] == {"matchExpressions": [{"key": "kuberl.io/job", "operator": "Exists"}]}
    assert pm["spec"]["namespaceSelector"] == {"any": True}
    trainer, ray = pm["spec"]["podMetricsEndpoints"]
    assert (trainer["port"], ray["port"]) == (
        "kuberl-metrics",
        "metrics",
    )  # tests/observability/test_monitor_targets.py
    assert trainer["honorLabels"] is True  # the trainer's job/namespace labels must win
    (sm,) = by_kind(docs, "ServiceMonitor")
    assert sm["metadata"]["labels"]["release"] == "kube-prometheus-stack"
    (svc,) = by_kind(docs, "Service")
    assert sm["spec"]["selector"]["matchLabels"].items() <= svc["metadata"]["labels"].items()
    assert [p["name"] for p in svc["spec"]["ports"]] == [sm["spec"]["endpoints"][0]["port"]]

    namespaced = render({"watch": {"namespaces": ["team-a"]}, **MONITORS_ON})
    (pm,) = by_kind(namespaced, "PodMonitor")
    assert pm["spec"]["namespaceSelector"] == {"matchNames": ["team-a"]}


def test_prometheus_rule_has_the_alerts(render: Render) -> None:
    (rule,) = by_kind(render(MONITORS_ON), "PrometheusRule")
    alerts = {r["alert"]: r for g in rule["spec"]["groups"] for r in g["rules"]}
    assert {"KuberlTrainingStalled", "KuberlCheckpointFailing", "KuberlJobFailed"} <= alerts.keys()
    assert "[10m]" in alerts["KuberlTrainingStalled"]["expr"]
    # Edge-triggered on the failure counter, typos apart (tests/observability/alerts_test.yaml).
    assert "increase(kuberl_operator_job_failures_total" in alerts["KuberlJobFailed"]["expr"]
    assert alerts["KuberlJobInvalidSpec"]["labels"]["severity"] == "warning"
    assert all(r["labels"]["team"] == "ml-platform" for r in alerts.values())
    assert not by_kind(render(), "PrometheusRule")


# --- values schema ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("values", "message"),
    [
        ({"replicaCount": -1}, "replicaCount"),
        ({"replicaCount": "two"}, "replicaCount"),
        ({"unknownKey": True}, "unknownKey"),
        ({"image": {"repository": "x", "pullPolicy": "Sometimes"}}, "pullPolicy"),
        ({"metrics": {"podMonitor": {"enabled": "yes"}}}, "enabled"),
        ({"metrics": {"podMonitor": {"enabled": True, "interval": "soon"}}}, "interval"),
        ({"watch": {"namespaces": ["Not_A_Namespace"]}}, "namespaces"),
        ({"operator": {"metricsPort": 80}}, "metricsPort"),
        ({"resources": {"request": {"cpu": "1"}}}, "request"),
        ({"watchNamespaces": ["a"]}, "use 'watch.namespaces'"),
        ({"serviceMonitor": {"enabled": True}}, "metrics.serviceMonitor"),
        ({"kuberay-operator": {"enabled": True}}, "install it first with its own chart"),
    ],
)
def test_bad_values_are_rejected(
    helm: str, chart: Path, tmp_path: Path, values: dict[str, Any], message: str
) -> None:
    proc = run([helm, "template", "rel", str(chart), "-f", str(write_values(tmp_path, values))], check=False)
    assert proc.returncode != 0, f"accepted {values}"
    assert message in proc.stderr, proc.stderr


def test_schema_is_strict_everywhere() -> None:
    schema = json.loads((CHART_DIR / "values.schema.json").read_text())
    open_objects = {"global", "podSecurityContext", "securityContext", "affinity"}

    def walk(node: dict[str, Any], path: str) -> None:
        if node.get("type") == "object" and "properties" in node and path.split(".")[-1] not in open_objects:
            assert node.get("additionalProperties") is False, f"{path or '<root>'} allows unknown keys"
        for key, child in node.get("properties", {}).items():
            walk(child, f"{path}.{key}" if path else key)

    walk(schema, "")
    values = yaml.safe_load((CHART_DIR / "values.yaml").read_text())
    assert set(values) <= set(schema["properties"])


# --- RBAC ---------------------------------------------------------------------------------------


def rules_of(docs: list[dict[str, Any]]) -> list[tuple[str, dict[str, Any]]]:
    return [
        (f"{d['kind']}/{d['metadata']['name']}", r)
        for d in docs
        if d["kind"] in ("Role", "ClusterRole")
        for r in d["rules"]
    ]


@pytest.mark.parametrize("scenario", sorted(SCENARIOS))
def test_rbac_least_privilege(render: Render, scenario: str) -> None:
    rules = rules_of(render(SCENARIOS[scenario]))
    assert rules
    for where, rule in rules:
        for field in ("apiGroups", "resources", "verbs"):
            assert "*" not in rule.get(field, []), f"wildcard {field} in {where}"
        assert "secrets" not in rule["resources"], f"{where} grants secrets"
        assert not {"escalate", "bind", "impersonate"} & set(rule["verbs"]), where
        assert "nonResourceURLs" not in rule


def test_rbac_matches_watch_mode(render: Render) -> None:
    cluster = render()
    (cr,) = by_kind(cluster, "ClusterRole")
    granted = {res for r in cr["rules"] for res in r["resources"]}
    assert {
        "rltrainingjobs",
        "rltrainingjobs/status",
        "rltrainingjobs/finalizers",
        "rayjobs",
        "configmaps",
        "networkpolicies",
        "events",
        "customresourcedefinitions",
    } <= granted
    # Cluster-wide, kopf lists no namespaces: no grant (tests/helm/test_rbac_grants.py has every verb).
    assert "namespaces" not in granted
    # Only the leader-election Role, in the release namespace: kopf peering is not used.
    assert [r["metadata"]["name"] for r in by_kind(cluster, "Role")] == ["rel-kuberl-leader-election"]
    assert "clusterkopfpeerings" not in granted

    docs = render({"watch": {"namespaces": ["team-a", "team-b"]}, "replicaCount": 2})
    (cr,) = by_kind(docs, "ClusterRole")
    # Watching a list of namespaces, kopf lists namespaces to learn which exist.
    assert [r["resources"] for r in cr["rules"]] == [["customresourcedefinitions"], ["namespaces"]]
    assert [r["verbs"] for r in cr["rules"]] == [["list", "watch"], ["list", "watch"]]
    roles = [r for r in by_kind(docs, "Role") if not r["metadata"]["name"].endswith("-leader-election")]
    bindings = [
        b for b in by_kind(docs, "RoleBinding") if not b["metadata"]["name"].endswith("-leader-election")
    ]
    assert sorted(r["metadata"]["namespace"] for r in roles) == ["team-a", "team-b"]
    assert sorted(b["metadata"]["namespace"] for b in bindings) == ["team-a", "team-b"]
    for role in roles:
        assert "kopfpeerings" not in {res for r in role["rules"] for res in r["resources"]}
    (dep,) = by_kind(docs, "Deployment")
    env = {e["name"]: e.get("value") for e in dep["spec"]["template"]["spec"]["containers"][0]["env"]}
    assert env["KUBERL_NAMESPACES"] == "team-a,team-b"
    assert "KUBERL_PEERING" not in env


def test_leader_election_lease_grants(render: Render) -> None:
    """Each replica may create the release's Lease and get/update only that one, in its own namespace."""
    docs = render({"replicaCount": 2})
    (role,) = [r for r in by_kind(docs, "Role") if r["metadata"]["name"] == "rel-kuberl-leader-election"]
    assert role["metadata"]["namespace"] == "kuberl-system"
    assert role["rules"] == [
        {"apiGroups": ["coordination.k8s.io"], "resources": ["leases"], "verbs": ["create"]},
        {
            "apiGroups": ["coordination.k8s.io"],
            "resources": ["leases"],
            "resourceNames": ["rel-kuberl"],
            "verbs": ["get", "update"],
        },
    ]
    (binding,) = [
        b for b in by_kind(docs, "RoleBinding") if b["metadata"]["name"] == "rel-kuberl-leader-election"
    ]
    assert binding["subjects"][0]["name"] == "rel-kuberl"
    (dep,) = by_kind(docs, "Deployment")
    env = {e["name"]: e.get("value") for e in dep["spec"]["template"]["spec"]["containers"][0]["env"]}
    assert env["KUBERL_LEASE_NAME"] == "rel-kuberl"


# --- pods -------------------------------------------------------------------------------------------


@pytest.mark.parametrize("scenario", sorted(SCENARIOS))
def test_every_container_is_hardened(render: Render, scenario: str) -> None:
    pods = [
        d["spec"]["template"]["spec"]
        for d in render(SCENARIOS[scenario])
        if d["kind"] in ("Deployment", "StatefulSet", "DaemonSet", "Job")
    ]
    assert pods
    for pod in pods:
        pod_sc = pod.get("securityContext", {})
        for c in pod.get("initContainers", []) + pod["containers"]:
            sc = c.get("securityContext", {})
            assert sc.get("runAsNonRoot", pod_sc.get("runAsNonRoot")) is True, c["name"]
            assert sc.get("runAsUser", pod_sc.get("runAsUser", 1)) != 0, c["name"]
            assert sc.get("readOnlyRootFilesystem") is True, c["name"]
            assert sc.get("allowPrivilegeEscalation") is False, c["name"]
            assert sc.get("capabilities", {}).get("drop") == ["ALL"], c["name"]
            assert c["resources"].get("requests"), c["name"]
            assert c["resources"].get("limits"), c["name"]
            assert c["livenessProbe"]["httpGet"]["path"] == "/healthz"
            assert c["readinessProbe"]


def test_operator_environment_contract(render: Render) -> None:
    (dep,) = by_kind(render({"trainerImage": "registry.example/trainer:1"}), "Deployment")
    (c,) = dep["spec"]["template"]["spec"]["containers"]
    env = {e["name"]: e.get("value") for e in c["env"]}
    assert env["KUBERL_NAMESPACES"] == ""
    assert env["KUBERL_OPERATOR_METRICS_PORT"] == "8081"
    assert env["KUBERL_DEFAULT_IMAGE"] == "registry.example/trainer:1"
    assert env["KUBERL_DEFAULT_GPU_IMAGE"] == "ghcr.io/kuberl/kuberl-trainer:0.1.0-cu128"
    assert env["KUBERL_NETWORK_POLICY"] == "true"
    assert "KUBERL_PEERING" not in env
    assert env["KUBERL_LEASE_NAME"] == "rel-kuberl"
    assert {p["name"]: p["containerPort"] for p in c["ports"]} == {"metrics": 8081, "health": 8082}


# --- dashboards, CRDs, subchart, NOTES -----------------------------------------------------------


def test_dashboards_are_sidecar_configmaps(render: Render) -> None:
    cms = [d for d in by_kind(render(), "ConfigMap") if "dashboard" in d["metadata"]["name"]]
    assert len(cms) == 2
    for cm in cms:
        assert cm["metadata"]["labels"]["grafana_dashboard"] == "1"
        ((key, body),) = cm["data"].items()
        name = key.removeprefix("kuberl-")
        assert json.loads(body) == json.loads((CHART_DIR / "dashboards" / name).read_text())
    assert not [
        d
        for d in by_kind(
            render({"grafana": {"dashboards": {"enabled": False, "label": "x", "labelValue": "1"}}}),
            "ConfigMap",
        )
        if "dashboard" in d["metadata"]["name"]
    ]


def test_chart_crds_match_generated_crds() -> None:
    generated = REPO_ROOT / "crds"
    shipped = CHART_DIR / "crds"
    names = sorted(p.name for p in generated.glob("*.yaml"))
    assert names, "crds/ is empty: run `python -m kuberl.spec.crd` (see crds/)"
    assert sorted(p.name for p in shipped.glob("*.yaml")) == names, "run scripts/sync-chart-crds.sh"
    _same, mismatch, errors = filecmp.cmpfiles(generated, shipped, names, shallow=False)
    assert not mismatch + errors, (
        f"chart CRDs differ from crds/: {mismatch + errors}; run scripts/sync-chart-crds.sh"
    )


def test_crds_are_installed_with_the_chart(render: Render) -> None:
    names = sorted(c["metadata"]["name"] for c in by_kind(render(), "CustomResourceDefinition"))
    # Ours only: replicas elect a leader through a Lease, so kopf's peering CRDs are not shipped.
    assert names == ["rltrainingjobs.kuberl.io"]


def test_chart_has_no_dependencies_to_fetch(helm: str, chart: Path) -> None:
    """KubeRay is a prerequisite, not a subchart: the chart installs offline, with nothing to fetch."""
    meta = yaml.safe_load((CHART_DIR / "Chart.yaml").read_text())
    assert "dependencies" not in meta
    assert not (CHART_DIR / "charts").exists()
    out = run([helm, "dependency", "list", str(CHART_DIR)]).stdout
    assert "kuberay" not in out.lower(), out


def test_notes_print_the_next_commands(helm: str, chart: Path) -> None:
    out = run([helm, "install", "rel", str(chart), "--dry-run=client", "--namespace", "kuberl-system"]).stdout
    notes = out[out.index("NOTES:") :]
    assert "examples/ppo-job.yaml" in notes
    assert "kubectl get rlj -w" in notes
    assert "rollout status deployment/rel-kuberl" in notes
