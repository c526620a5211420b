"""Builders: golden manifests (regenerate with KUBERL_UPDATE_GOLDEN=1) and KubeRay schema validation."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pytest
import yaml

from kuberl.spec import parse_job
from kuberl_operator.builders import build_config_map, build_ray_job, child_names, render_job

GOLDEN = Path(__file__).parent / "golden"

BASE: dict[str, Any] = {
    "apiVersion": "kuberl.io/v1alpha1",
    "kind": "RLTrainingJob",
    "metadata": {"name": "ppo-cartpole", "namespace": "team-a", "uid": "1234-abcd", "generation": 1},
    "spec": {"algorithm": "PPO", "env": "CartPole-v1", "resources": {"envRunners": 4, "envsPerRunner": 8}},
}


def _job(**spec: Any) -> Any:
    doc = yaml.safe_load(yaml.safe_dump(BASE))
    doc["spec"].update(spec)
    return parse_job(doc)


CASES: dict[str, dict[str, Any]] = {
    "cpu_only": {},
    "gpu_learner": {
        "resources": {"envRunners": 8, "gpusPerLearner": 1},
        "cluster": {
            "image": "kuberl/trainer:0.1.0-cuda",
            "nodeSelector": {"pool": "rl"},
            "tolerations": [{"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"}],
            "priorityClassName": "training",
            "serviceAccount": "kuberl-trainer",
            "head": {"cpu": "8", "memory": "32Gi"},
        },
    },
    "s3_secret": {
        "checkpoint": {
            "uri": "s3://rl-checkpoints/ppo",
            "credentials": {"secretName": "s3-creds", "endpointUrlKey": "endpoint"},
        },
        "activeDeadlineSeconds": 7200,
    },
    "suspend": {"suspend": True, "metrics": {"port": 9090}},
    "external": {"external": {"enabled": True, "tokenSecret": {"name": "sim-token"}}},
    # Data-parallel learners on GPU worker pods (tests/unit/operator/test_operator_learners.py).
    "ddp_gpu_learners": {
        "resources": {"envRunners": 8, "learners": 4, "gpusPerLearner": 1, "cpusPerLearner": 2},
        "cluster": {"image": "kuberl/trainer:0.1.0-cuda", "nodeSelector": {"pool": "rl"}},
    },
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_golden(case: str) -> None:
    manifests = [
        build_config_map(_job(**CASES[case]), attempt=0),
        build_ray_job(_job(**CASES[case]), attempt=0, resume="auto"),
    ]
    text = yaml.safe_dump_all(manifests, sort_keys=False)
    path = GOLDEN / f"{case}.yaml"
    if os.environ.get("KUBERL_UPDATE_GOLDEN"):
        path.write_text(text)
    assert path.exists(), f"missing {path}: run with KUBERL_UPDATE_GOLDEN=1"
    assert text == path.read_text(), f"{case} differs from {path} (KUBERL_UPDATE_GOLDEN=1 regenerates it)"


@pytest.mark.parametrize("case", sorted(CASES))
@pytest.mark.parametrize("attempt", [0, 2])
def test_ray_job_validates_against_kuberay(case: str, attempt: int, rayjob_validator: Any) -> None:
    manifest = build_ray_job(_job(**CASES[case]), attempt=attempt, resume="auto")
    errors = sorted(rayjob_validator.iter_errors(manifest), key=lambda e: list(e.path))
    assert not errors, "\n".join(f"{list(e.path)}: {e.message}" for e in errors)


def test_gpu_learner_gets_its_gpus_on_the_head() -> None:
    """The learner trains in the driver, which KubeRay runs on the head pod."""
    cpu = build_ray_job(_job(), attempt=0, resume="auto")
    groups = cpu["spec"]["rayClusterSpec"]["workerGroupSpecs"]
    assert [g["groupName"] for g in groups] == ["env-runners"]
    assert "nvidia.com/gpu" not in str(cpu)
    assert cpu["spec"]["rayClusterSpec"]["headGroupSpec"]["rayStartParams"]["num-gpus"] == "0"
    gpu = build_ray_job(_job(**CASES["gpu_learner"]), attempt=0, resume="auto")
    head = gpu["spec"]["rayClusterSpec"]["headGroupSpec"]
    assert head["rayStartParams"]["num-gpus"] == "1"
    container = head["template"]["spec"]["containers"][0]
    assert container["resources"]["limits"]["nvidia.com/gpu"] == 1
    assert head["template"]["spec"]["nodeSelector"] == {"pool": "rl"}
    assert head["template"]["spec"]["tolerations"][0]["key"] == "nvidia.com/gpu"
    workers = gpu["spec"]["rayClusterSpec"]["workerGroupSpecs"]
    for w in workers:
        limits = w["template"]["spec"]["containers"][0]["resources"]["limits"]
        assert "nvidia.com/gpu" not in limits
    assert all(w["rayStartParams"]["num-gpus"] == "0" for w in workers)


def test_secret_values_never_inlined() -> None:
    manifest = build_ray_job(_job(**CASES["s3_secret"]), attempt=0, resume="auto")
    head = manifest["spec"]["rayClusterSpec"]["headGroupSpec"]["template"]["spec"]["containers"][0]
    creds = {e["name"]: e for e in head["env"] if e["name"].startswith("AWS_")}
    assert set(creds) == {"AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_ENDPOINT_URL"}
    for env in creds.values():
        assert "value" not in env
        assert env["valueFrom"]["secretKeyRef"]["name"] == "s3-creds"


def test_identity_owner_labels_and_policy() -> None:
    job = _job()
    manifest = build_ray_job(job, attempt=3, resume="auto")
    meta = manifest["metadata"]
    assert meta["name"] == child_names(job, 3).ray_job == "ppo-cartpole-r3"
    assert meta["labels"] == {
        "kuberl.io/job": "ppo-cartpole",
        "kuberl.io/attempt": "3",
        "app.kubernetes.io/managed-by": "kuberl",
    }
    assert meta["ownerReferences"][0]["uid"] == "1234-abcd"
    assert meta["ownerReferences"][0]["controller"] is True
    spec = manifest["spec"]
    assert spec["backoffLimit"] == 0
    assert spec["shutdownAfterJobFinishes"] is True
    assert spec["entrypoint"] == "kuberl run /etc/kuberl/job.yaml --set resume=auto"
    head = spec["rayClusterSpec"]["headGroupSpec"]["template"]["spec"]["containers"][0]
    ports = {p["name"]: p["containerPort"] for p in head["ports"]}
    assert ports["metrics"] == 8080
    assert "policy-server" not in ports  # only with spec.external (test_policy_server_port_and_token…)
    assert ports["ray-metrics"] != ports["metrics"]
    assert {"KUBERL_JOB_NAME", "KUBERL_NAMESPACE"} <= {e["name"] for e in head["env"]}


def test_builders_are_deterministic_and_config_map_round_trips() -> None:
    job = _job(**CASES["gpu_learner"])
    assert render_job(job) == render_job(job)
    doc = yaml.safe_load(build_config_map(job)["data"]["job.yaml"])
    again = parse_job(doc)
    assert again.spec.resources == job.spec.resources
    assert again.spec.config == job.spec.config


def test_render_of_a_file_has_no_owner_reference() -> None:
    doc = yaml.safe_load(yaml.safe_dump(BASE))
    del doc["metadata"]["uid"]
    manifests = render_job(parse_job(doc))
    assert [m["kind"] for m in manifests] == ["ConfigMap", "RayJob"]
    assert all("ownerReferences" not in m["metadata"] for m in manifests)
    assert manifests[1]["spec"]["entrypoint"].endswith("--set resume=auto")


def test_resume_uri_is_quoted_for_the_shell() -> None:
    manifest = build_ray_job(_job(), attempt=0, resume="s3://bucket/ckpt dir")
    assert manifest["spec"]["entrypoint"].endswith("--set resume='s3://bucket/ckpt dir'")


def test_validator_is_strict(rayjob_validator: Any) -> None:
    manifest = build_ray_job(_job(), attempt=0, resume="auto")
    manifest["spec"]["notAField"] = 1
    manifest["spec"]["rayClusterSpec"]["headGroupSpec"]["template"]["spec"]["containers"][0]["ports"][0][
        "containerPort"
    ] = "x"
    assert len(list(rayjob_validator.iter_errors(manifest))) == 2


def _head(manifest: dict[str, Any]) -> dict[str, Any]:
    container: dict[str, Any] = manifest["spec"]["rayClusterSpec"]["headGroupSpec"]["template"]["spec"][
        "containers"
    ][0]
    return container


def test_policy_server_port_and_token_only_with_spec_external() -> None:
    plain = _head(build_ray_job(_job(), attempt=0, resume="auto"))
    assert "policy-server" not in [p["name"] for p in plain["ports"]]
    assert not [e for e in plain["env"] if e["name"].startswith("KUBERL_POLICY_SERVER")]

    job = _job(external={"enabled": True, "port": 0, "tokenSecret": {"name": "sim-token", "key": "tk"}})
    head = _head(build_ray_job(job, attempt=0, resume="auto"))
    # A named head container port: KubeRay copies it into the head Service. Port 0 gets the default.
    assert {"name": "policy-server", "containerPort": 8900} in head["ports"]
    env = {e["name"]: e for e in head["env"]}
    assert env["KUBERL_POLICY_SERVER_HOST"]["value"] == "0.0.0.0"
    assert env["KUBERL_POLICY_SERVER_TOKEN"]["valueFrom"] == {
        "secretKeyRef": {"name": "sim-token", "key": "tk"}
    }
    # The trainer reads the same fixed port from the mounted job document.
    doc = yaml.safe_load(build_config_map(job, attempt=0)["data"]["job.yaml"])
    assert doc["spec"]["external"]["port"] == 8900
