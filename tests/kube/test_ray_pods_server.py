"""What the builders make, against a real API server (tests/fixtures/kube.py): every child `kuberl render`
prints is accepted under strict field validation (the RayJob by KubeRay's CRD, the NetworkPolicy by
core's schema), and every Ray pod is admitted by the PodSecurity admission plugin in a namespace that
enforces "restricted" (#11: Ray pods had no securityContext and were refused there).

The API server has no kubelet: Pods are created with a server-side dry run, which runs admission."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.fixtures.kube import ControlPlane

ROOT = Path(__file__).resolve().parents[2]
RENDERED = [
    ROOT / "examples" / "ppo-job.yaml",
    ROOT / "examples" / "ppo-external.yaml",
    *sorted((ROOT / "examples" / "cluster").glob("*.yaml")),
]


def render(path: Path, *sets: str) -> list[dict[str, Any]]:
    args = [a for s in sets for a in ("--set", s)]
    out = subprocess.run(
        [sys.executable, "-m", "kuberl.cli", "render", str(path), *args],
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    ).stdout
    return list(yaml.safe_load_all(out))


def pods(ray_job: dict[str, Any], namespace: str) -> list[dict[str, Any]]:
    """One Pod per group, from the group's template, as KubeRay would create it."""
    cluster = ray_job["spec"]["rayClusterSpec"]
    groups = [("head", cluster["headGroupSpec"]), *((g["groupName"], g) for g in cluster["workerGroupSpecs"])]
    return [
        {
            "apiVersion": "v1",
            "kind": "Pod",
            "metadata": {
                "name": f"{ray_job['metadata']['name']}-{name}",
                "namespace": namespace,
                **group["template"]["metadata"],
            },
            "spec": group["template"]["spec"],
        }
        for name, group in groups
    ]


def dry_run(
    kube: ControlPlane, docs: list[dict[str, Any]], namespace: str
) -> subprocess.CompletedProcess[str]:
    return kube.kubectl(
        "apply", "--dry-run=server", "--validate=strict", "-n", namespace, "-f", "-",
        input=yaml.safe_dump_all(docs), check=False,
    )  # fmt: skip


@pytest.fixture
def restricted_namespace(kube: ControlPlane, kube_namespace: str) -> str:
    kube.kubectl("label", "namespace", kube_namespace, "pod-security.kubernetes.io/enforce=restricted")
    return kube_namespace


@pytest.mark.parametrize("path", RENDERED, ids=lambda p: p.name)
def test_rendered_children_are_accepted_strictly(kube: ControlPlane, kube_namespace: str, path: Path) -> None:
    docs = render(path)
    assert [d["kind"] for d in docs] == ["ConfigMap", "NetworkPolicy", "RayJob"]
    res = dry_run(kube, docs, kube_namespace)
    assert res.returncode == 0, res.stderr
    assert "Warning" not in res.stderr, res.stderr  # unknown fields would be warned about, then pruned


@pytest.mark.parametrize("path", RENDERED, ids=lambda p: p.name)
def test_every_ray_pod_is_admitted_as_restricted(
    kube: ControlPlane, restricted_namespace: str, path: Path
) -> None:
    (ray_job,) = [d for d in render(path) if d["kind"] == "RayJob"]
    res = dry_run(kube, pods(ray_job, restricted_namespace), restricted_namespace)
    assert res.returncode == 0, res.stderr
    assert "violate" not in res.stderr, res.stderr


def test_the_admission_check_can_fail(kube: ControlPlane, restricted_namespace: str) -> None:
    """A job that asks for privilege escalation is refused by the same check (so the test above can fail)."""
    (ray_job,) = [
        d
        for d in render(
            ROOT / "examples" / "ppo-job.yaml",
            "cluster.pod.containerSecurityContext.allowPrivilegeEscalation=true",
        )
        if d["kind"] == "RayJob"
    ]
    res = dry_run(kube, pods(ray_job, restricted_namespace), restricted_namespace)
    assert res.returncode != 0
    assert "allowPrivilegeEscalation" in res.stderr, res.stderr
