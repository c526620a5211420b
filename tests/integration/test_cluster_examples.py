"""The examples meant for a cluster (examples/cluster/) render, through `kuberl render` as a user runs it,
into what a cluster needs: checkpoints in S3 with a credentials Secret (a retry resumes instead of
starting over), no local paths a pod does not have, and the GPU example on the CUDA image, its head
alone on GPU nodes, queued by Kueue, admissible under Pod Security "restricted"."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
CLUSTER_EXAMPLES = sorted((ROOT / "examples" / "cluster").glob("*.yaml"))


def render(path: Path) -> dict[str, dict[str, Any]]:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT / "trainer_image"), str(ROOT / "operator")])}
    res = subprocess.run(
        [sys.executable, "-m", "kuberl.cli", "render", str(path)],
        capture_output=True,
        text=True,
        timeout=120,
        env=env,
        check=False,
    )
    assert res.returncode == 0, res.stderr
    return {d["kind"]: d for d in yaml.safe_load_all(res.stdout)}


def _local(uri: str) -> bool:
    return not uri.startswith(("s3://", "/"))


def test_there_are_cluster_examples() -> None:
    assert {p.name for p in CLUSTER_EXAMPLES} >= {"ppo-cartpole.yaml", "sac-gpu.yaml", "bc-cartpole.yaml"}


@pytest.mark.parametrize("path", CLUSTER_EXAMPLES, ids=lambda p: p.name)
def test_cluster_example_keeps_its_state_outside_the_pod(path: Path) -> None:
    docs = render(path)
    assert set(docs) == {"ConfigMap", "NetworkPolicy", "RayJob"}
    job = yaml.safe_load(docs["ConfigMap"]["data"]["job.yaml"])["spec"]
    assert job["checkpoint"]["uri"].startswith("s3://"), "a retry must resume from a shared store"
    assert job["checkpoint"]["credentials"]["secretName"]
    for uri in [*job.get("input", {}).get("uris", []), job.get("output", {}).get("uri", "s3://")]:
        assert not _local(uri), f"{uri}: a relative path does not exist in a pod"
    head = docs["RayJob"]["spec"]["rayClusterSpec"]["headGroupSpec"]["template"]["spec"]["containers"][0]
    assert {e["name"] for e in head["env"]} >= {"AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"}


def test_gpu_example_is_placed_queued_and_restricted() -> None:
    docs = render(ROOT / "examples" / "cluster" / "sac-gpu.yaml")
    ray_job = docs["RayJob"]
    assert ray_job["metadata"]["labels"]["kueue.x-k8s.io/queue-name"] == "gpu-queue"
    cluster = ray_job["spec"]["rayClusterSpec"]
    head = cluster["headGroupSpec"]["template"]["spec"]
    (runners,) = cluster["workerGroupSpecs"]
    assert head["containers"][0]["image"].endswith("-cu128")
    assert head["containers"][0]["resources"]["limits"]["nvidia.com/gpu"] == 1
    assert head["nodeSelector"] == {"nvidia.com/gpu.present": "true"}
    assert "nodeSelector" not in runners["template"]["spec"]
    for pod in (head, runners["template"]["spec"]):
        assert pod["securityContext"]["runAsNonRoot"] is True
        assert pod["containers"][0]["securityContext"]["capabilities"]["drop"] == ["ALL"]
        assert pod["imagePullSecrets"] == [{"name": "regcred"}]


def test_local_offline_examples_point_to_their_cluster_version() -> None:
    """Examples reading ./data run where the data was recorded; each says how to ship it to a pod."""
    for path in sorted((ROOT / "examples").glob("*.yaml")):
        spec = yaml.safe_load(path.read_text())["spec"]
        if any(_local(u) for u in spec.get("input", {}).get("uris", [])):
            assert (
                ROOT / "examples" / "cluster" / path.name
            ).exists() or "examples/cluster/" in path.read_text(), (
                f"{path.name} reads a local path: add examples/cluster/{path.name} or point to one"
            )
