"""Data-parallel learners on Kubernetes: `resources.learners > 1` gets a `learners` worker group (one pod per
learner, its GPUs there, pinned by the custom Ray resource the trainer's learner actors request)."""

from __future__ import annotations

import json
import os
from typing import Any

import pytest
import yaml

from kuberl.spec.common import LEARNER_RESOURCE
from kuberl.spec.errors import SpecError
from kuberl_operator.builders import build_config_map, build_ray_job, head_gpus
from tests.unit.operator.test_operator_builders import CASES, GOLDEN, _job

# GPU learner pods sized apart from the head (spec.cluster.learners), on a node pool of their own.
SIZED: dict[str, Any] = {
    "resources": {"envRunners": 8, "learners": 2, "gpusPerLearner": 1, "cpusPerLearner": 2},
    "cluster": {
        "image": "kuberl/trainer:0.1.0-cuda",
        "nodeSelector": {"team": "rl"},
        "tolerations": [{"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"}],
        "head": {"cpu": "4", "memory": "8Gi"},
        "learners": {"cpu": "6", "memory": "48Gi", "nodeSelector": {"pool": "a100"}},
    },
}


def groups(manifest: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {g["groupName"]: g for g in manifest["spec"]["rayClusterSpec"]["workerGroupSpecs"]}


def test_gpu_learners_get_a_worker_group_of_their_own() -> None:
    job = _job(**CASES["ddp_gpu_learners"])
    manifest = build_ray_job(job, attempt=0, resume="auto")
    learners = groups(manifest)["learners"]
    assert learners["replicas"] == learners["minReplicas"] == learners["maxReplicas"] == 4
    container = learners["template"]["spec"]["containers"][0]
    assert container["resources"]["limits"]["nvidia.com/gpu"] == 1
    assert container["resources"]["limits"]["cpu"] == "2"
    assert learners["template"]["spec"]["nodeSelector"] == {"pool": "rl"}
    start = learners["rayStartParams"]
    assert start["num-gpus"] == "1"
    # KubeRay hands the value to `ray start --resources=...`: a JSON object inside a quoted string.
    assert json.loads(json.loads(start["resources"])) == {LEARNER_RESOURCE: 1}
    # The head holds the driver only: no learner GPUs there, and none on the env-runner pods.
    assert head_gpus(job) == 0
    assert manifest["spec"]["rayClusterSpec"]["headGroupSpec"]["rayStartParams"]["num-gpus"] == "0"
    assert groups(manifest)["env-runners"]["rayStartParams"]["num-gpus"] == "0"
    assert "resources" not in groups(manifest)["env-runners"]["rayStartParams"]


def test_fractional_gpus_round_up_and_cpu_learners_still_get_their_pods() -> None:
    odd = _job(resources={"envRunners": 2, "learners": 2, "gpusPerLearner": 1.5, "cpusPerLearner": 0.5})
    learners = groups(build_ray_job(odd, attempt=0, resume="auto"))["learners"]
    assert learners["rayStartParams"]["num-gpus"] == "2"
    assert learners["template"]["spec"]["containers"][0]["resources"]["limits"]["cpu"] == "1"
    cpu = _job(resources={"envRunners": 2, "learners": 4})
    learners = groups(build_ray_job(cpu, attempt=0, resume="auto"))["learners"]
    assert learners["replicas"] == 4
    assert learners["rayStartParams"]["num-gpus"] == "0"
    assert "nvidia.com/gpu" not in str(learners)


def test_one_learner_keeps_the_head_layout() -> None:
    job = _job(resources={"envRunners": 8, "gpusPerLearner": 1})
    manifest = build_ray_job(job, attempt=0, resume="auto")
    assert list(groups(manifest)) == ["env-runners"]
    assert head_gpus(job) == 1


def test_sized_learner_pods_golden() -> None:
    job = _job(**SIZED)
    text = yaml.safe_dump_all(
        [build_config_map(job, attempt=0), build_ray_job(job, attempt=0, resume="auto")], sort_keys=False
    )
    path = GOLDEN / "ddp_sized_learners.yaml"
    if os.environ.get("KUBERL_UPDATE_GOLDEN"):
        path.write_text(text)
    assert text == path.read_text(), f"differs from {path} (KUBERL_UPDATE_GOLDEN=1 regenerates it)"


def test_sized_learner_pods_validate_against_kuberay(rayjob_validator: Any) -> None:
    manifest = build_ray_job(_job(**SIZED), attempt=1, resume="auto")
    errors = sorted(rayjob_validator.iter_errors(manifest), key=lambda e: list(e.path))
    assert not errors, "\n".join(f"{list(e.path)}: {e.message}" for e in errors)


def test_cluster_learners_sizes_the_learner_pods_only() -> None:
    manifest = build_ray_job(_job(**SIZED), attempt=0, resume="auto")
    learners = groups(manifest)["learners"]
    pod = learners["template"]["spec"]
    limits = pod["containers"][0]["resources"]["limits"]
    assert limits == {"cpu": "6", "memory": "48Gi", "nvidia.com/gpu": 1}
    assert pod["containers"][0]["resources"]["requests"] == limits
    # The group's selector on top of the cluster's; the cluster-wide tolerations apply to it as to every pod.
    assert pod["nodeSelector"] == {"team": "rl", "pool": "a100"}
    assert pod["tolerations"][0]["key"] == "nvidia.com/gpu"
    assert learners["replicas"] == 2
    assert learners["rayStartParams"]["num-gpus"] == "1"
    head = manifest["spec"]["rayClusterSpec"]["headGroupSpec"]["template"]["spec"]
    assert head["containers"][0]["resources"]["limits"] == {"cpu": "4", "memory": "8Gi"}
    assert head["nodeSelector"] == {"team": "rl"}
    runners = groups(manifest)["env-runners"]["template"]["spec"]
    assert runners["nodeSelector"] == {"team": "rl"}
    # Only memory set: the CPU stays derived from resources.cpusPerLearner, and the reverse.
    only_memory = {**SIZED, "cluster": {"learners": {"memory": "16Gi"}}}
    limits = groups(build_ray_job(_job(**only_memory), attempt=0, resume="auto"))["learners"]["template"][
        "spec"
    ]
    assert limits["containers"][0]["resources"]["limits"]["cpu"] == "2"
    assert limits["containers"][0]["resources"]["limits"]["memory"] == "16Gi"
    only_cpu = {**SIZED, "cluster": {"learners": {"cpu": "500m"}}}
    limits = groups(build_ray_job(_job(**only_cpu), attempt=0, resume="auto"))["learners"]["template"]["spec"]
    assert limits["containers"][0]["resources"]["limits"] == {
        "cpu": "500m",
        "memory": "4Gi",
        "nvidia.com/gpu": 1,
    }


def test_cluster_learners_with_one_learner_is_refused_by_name() -> None:
    with pytest.raises(SpecError) as info:
        _job(resources={"envRunners": 2}, cluster={"learners": {"memory": "16Gi"}})
    message = str(info.value)
    assert "spec.cluster.learners" in message
    assert "resources.learners is 1" in message
    assert "would be ignored" in message
    with pytest.raises(SpecError, match=r"spec.cluster.learners.memory"):
        _job(resources={"learners": 2}, cluster={"learners": {"memory": "lots"}})
    with pytest.raises(
        SpecError, match=r"spec.cluster.learners.replicas"
    ):  # replicas follow resources.learners
        _job(resources={"learners": 2}, cluster={"learners": {"replicas": 3}})
