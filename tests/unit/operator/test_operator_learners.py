"""Data-parallel learners on Kubernetes: `resources.learners > 1` gets a `learners` worker group (one pod per
learner, its GPUs there, pinned by the custom Ray resource the trainer's learner actors request)."""

from __future__ import annotations

import json
from typing import Any

from kuberl.spec.common import LEARNER_RESOURCE
from kuberl_operator.builders import build_ray_job, head_gpus
from tests.unit.operator.test_operator_builders import CASES, _job


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
