"""Least privilege, both ways: every grant the chart renders is used by a code path of the operator, and
every API call the operator makes is granted (#11: cluster-wide list/watch on ConfigMaps, unused verbs,
the namespaces permission in the wrong mode).

What the operator uses is collected from the code itself, not from a hand-kept list:
- every method of `k8s.KubernetesApi` (the `Api` the reconciler calls), run against a recording
  ApiClient, so each HTTP call is seen with its method and path; `create` with every kind the builders
  produce, `delete` with every kind the reconciler deletes;
- the Lease calls of the leader elector (`leader.py`);
- kopf's needs, from the handlers registered in `kuberl_operator.handlers`: list/watch on every handled
  resource, patch on those with changing handlers or timers (finalizer, progress annotations), Events,
  the CRD watch, and namespaces only when it watches a list of them (kopf's namespace observer);
- `update` on `rltrainingjobs/finalizers`, which the OwnerReferencesPermissionEnforcement admission
  plugin requires to create children with `blockOwnerDeletion`.
"""

from __future__ import annotations

import asyncio
import re
from pathlib import Path
from typing import Any

import kopf
import kubernetes
import pytest

import kuberl_operator.handlers  # noqa: F401  (registers the handlers)
from kuberl.spec import parse_job
from kuberl_operator import k8s, leader, reconcile
from kuberl_operator.builders import Defaults, build_children
from tests.helm.conftest import Render

Grant = tuple[str, str, str]  # (apiGroup, resource, verb)
OPERATOR = Path(reconcile.__file__).parent
_HTTP_VERBS = {"POST": "create", "PATCH": "patch", "PUT": "update", "DELETE": "delete"}
_LEASE_VERBS = {"read": "get", "create": "create", "replace": "update", "patch": "patch", "delete": "delete"}


class RecordingClient(kubernetes.client.ApiClient):
    """An ApiClient that sends nothing and records (method, path template, path params) per call."""

    def __init__(self) -> None:
        super().__init__(kubernetes.client.Configuration())
        self.calls: list[tuple[str, str, dict[str, Any]]] = []

    def call_api(self, resource_path: str, method: str, path_params: Any = None, *_: Any, **__: Any) -> None:  # type: ignore[override]
        self.calls.append((method, resource_path, dict(path_params or {})))


def _grant(method: str, path: str, params: dict[str, Any]) -> Grant:
    """The (apiGroup, resource, verb) an HTTP call needs: /api/v1/... is the core group ("")."""
    parts = [params.get(p.strip("{}"), p) if p.startswith("{") else p for p in path.strip("/").split("/")]
    group, rest = ("", parts[2:]) if parts[0] == "api" else (parts[1], parts[3:])
    if rest[:1] == ["namespaces"] and len(rest) > 2:
        rest = rest[2:]
    resource = rest[0] + (f"/{rest[2]}" if len(rest) > 2 else "")
    verb = _HTTP_VERBS.get(method) or ("get" if len(rest) > 1 else "list")
    return (group, resource, verb)


def _job() -> Any:
    return parse_job(
        {
            "apiVersion": "kuberl.io/v1alpha1",
            "kind": "RLTrainingJob",
            "metadata": {"name": "j", "namespace": "ns", "uid": "u"},
            "spec": {"algorithm": "PPO", "env": "CartPole-v1"},
        }
    )


def api_uses(*, network_policy: bool) -> dict[Grant, str]:
    client = RecordingClient()
    api = k8s.KubernetesApi(client)
    children = build_children(
        _job(), attempt=0, resume="auto", defaults=Defaults(network_policy=network_policy)
    )
    deleted = set(re.findall(r'ctx\.api\.delete\("(\w+)"', (OPERATOR / "reconcile.py").read_text()))
    calls = {
        "get_job": api.get_job("ns", "j"),
        "get_ray_job": api.get_ray_job("ns", "j-r0"),
        "get_config_map": api.get_config_map("ns", "j-r0-spec"),
        **{f"create {m['kind']}": api.create(m) for m in children},
        "patch_ray_job": api.patch_ray_job("ns", "j-r0", {"spec": {"suspend": True}}),
        "replace_ray_job_spec": api.replace_ray_job_spec("ns", "j-r0", {}),
        "patch_config_map": api.patch_config_map("ns", "j-r0-spec", {"data": {}}),
        **{f"delete {kind}": api.delete(kind, "ns", "x") for kind in sorted(deleted)},
        "patch_job_status": api.patch_job_status("ns", "j", {}),
    }
    uses: dict[Grant, str] = {}
    for name, call in calls.items():
        before = len(client.calls)
        asyncio.run(call)
        for method, path, params in client.calls[before:]:
            uses.setdefault(_grant(method, path, params), f"k8s.KubernetesApi.{name}")
    assert {"get_job", "patch_job_status"} <= calls.keys()
    missing = {m for m in k8s.Api.__dict__ if not m.startswith("_")} - {c.split()[0] for c in calls}
    assert not missing, f"exercise these Api methods too: {missing}"
    return uses


def leader_uses() -> dict[Grant, str]:
    source = Path(leader.__file__).read_text()
    return {
        ("coordination.k8s.io", "leases", _LEASE_VERBS[op]): f"leader.py {op}_namespaced_lease"
        for op in re.findall(r"self\._api\.(\w+?)_namespaced_lease\(", source)
    }


def kopf_uses(*, namespaced: bool) -> dict[Grant, str]:
    registry = kopf.get_default_registry()
    uses: dict[Grant, str] = {
        ("apiextensions.k8s.io", "customresourcedefinitions", "list"): "kopf resource observer",
        ("apiextensions.k8s.io", "customresourcedefinitions", "watch"): "kopf resource observer",
        ("", "events", "create"): "kopf.event (handlers._post_event)",
    }
    if namespaced:
        uses[("", "namespaces", "list")] = "kopf namespace observer (not cluster-wide)"
        uses[("", "namespaces", "watch")] = "kopf namespace observer (not cluster-wide)"
    for kind, patches in (("_changing", True), ("_spawning", True), ("_watching", False)):
        for handler in getattr(registry, kind).get_all_handlers():
            sel = handler.selector
            for verb in ("list", "watch", *(("patch",) if patches else ())):
                uses.setdefault(
                    (sel.group or "", sel.any_name, verb), f"kopf {kind[1:]} handler {handler.id}"
                )
    return uses


def used_grants(*, namespaced: bool, network_policy: bool = True) -> dict[Grant, str]:
    uses = {
        **api_uses(network_policy=network_policy),
        **leader_uses(),
        **kopf_uses(namespaced=namespaced),
    }
    children = build_children(_job(), attempt=0, resume="auto")
    if any(r.get("blockOwnerDeletion") for m in children for r in m["metadata"].get("ownerReferences", [])):
        uses[("kuberl.io", "rltrainingjobs/finalizers", "update")] = (
            "children's blockOwnerDeletion owner references"
        )
    return uses


def granted(docs: list[dict[str, Any]], *, namespace: str | None = None) -> set[Grant]:
    """Every (apiGroup, resource, verb) of the ClusterRoles, and of the Roles in `namespace` or the
    release namespace (the leader-election Role)."""
    out: set[Grant] = set()
    for d in docs:
        if d["kind"] == "ClusterRole" or (
            d["kind"] == "Role" and d["metadata"]["namespace"] in (namespace, "kuberl-system")
        ):
            for rule in d["rules"]:
                out |= {
                    (g, r, v) for g in rule["apiGroups"] for r in rule["resources"] for v in rule["verbs"]
                }
    return out


def _compare(grants: set[Grant], uses: dict[Grant, str]) -> None:
    unused = sorted(grants - uses.keys())
    missing = sorted((g, uses[g]) for g in uses.keys() - grants)
    assert not unused, f"granted but used by no code path: {unused}"
    assert not missing, f"used but not granted (would be a 403): {missing}"


@pytest.mark.parametrize("network_policy", [True, False])
def test_cluster_wide_grants_are_exactly_what_the_code_uses(render: Render, network_policy: bool) -> None:
    docs = render({"networkPolicy": {"enabled": network_policy}})
    _compare(granted(docs), used_grants(namespaced=False, network_policy=network_policy))


def test_namespaced_grants_are_exactly_what_the_code_uses(render: Render) -> None:
    docs = render({"watch": {"namespaces": ["team-a", "team-b"]}})
    for ns in ("team-a", "team-b"):
        _compare(granted(docs, namespace=ns), used_grants(namespaced=True))
    # Nothing namespaced is granted cluster-wide in this mode, ConfigMaps least of all.
    (cluster_role,) = [d for d in docs if d["kind"] == "ClusterRole"]
    assert {r for rule in cluster_role["rules"] for r in rule["resources"]} == {
        "customresourcedefinitions",
        "namespaces",
    }


def test_the_comparison_catches_an_extra_or_a_missing_grant(render: Render) -> None:
    """The check can fail: one verb more, or one less, is reported."""
    grants, uses = granted(render()), used_grants(namespaced=False)
    with pytest.raises(AssertionError, match="used by no code path"):
        _compare(grants | {("", "configmaps", "list")}, uses)
    with pytest.raises(AssertionError, match="would be a 403"):
        _compare(grants - {("ray.io", "rayjobs", "delete")}, uses)
