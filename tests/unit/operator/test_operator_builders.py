"""Builders: golden manifests (regenerate with KUBERL_UPDATE_GOLDEN=1) and KubeRay schema validation."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pytest
import yaml

from kuberl.spec import SpecError, parse_job
from kuberl_operator.builders import (
    Defaults,
    build_children,
    build_config_map,
    build_network_policy,
    build_ray_job,
    child_names,
    render_job,
)

GOLDEN = Path(__file__).parent / "golden"

BASE: dict[str, Any] = {
    "apiVersion": "kuberl.io/v1alpha1",
    "kind": "RLTrainingJob",
    "metadata": {"name": "ppo-cartpole", "namespace": "team-a", "uid": "1234-abcd", "generation": 1},
    "spec": {"algorithm": "PPO", "env": "CartPole-v1", "resources": {"envRunners": 4, "envsPerRunner": 8}},
}


def _job(**spec: Any) -> Any:
    doc = yaml.safe_load(yaml.safe_dump(BASE))
    doc["metadata"].update(spec.pop("metadata", {}))
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
    # Everything a platform team customises (#11: Pod Security "restricted", Kueue, private registry,
    # datasets, the head alone on GPU nodes).
    "customised": {
        "metadata": {"labels": {"kueue.x-k8s.io/queue-name": "team-a-queue", "unrelated": "x"}},
        "resources": {"envRunners": 4, "gpusPerLearner": 1},
        "cluster": {
            "labels": {"volcano.sh/queue-name": "rl"},
            "annotations": {"example.com/cost-center": "42"},
            "nodeSelector": {"pool": "rl"},
            "head": {
                "nodeSelector": {"nvidia.com/gpu.present": "true"},
                "tolerations": [{"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"}],
                "pod": {"annotations": {"cluster-autoscaler.kubernetes.io/safe-to-evict": "false"}},
            },
            "cpuWorkers": {
                "pod": {
                    "affinity": {"podAntiAffinity": {"preferredDuringSchedulingIgnoredDuringExecution": []}}
                }
            },
            "pod": {
                "labels": {"team": "a"},
                "imagePullSecrets": [{"name": "regcred"}],
                "securityContext": {"runAsUser": 1000, "fsGroup": 1000},
                "volumes": [{"name": "data", "persistentVolumeClaim": {"claimName": "datasets"}}],
                "volumeMounts": [{"name": "data", "mountPath": "/data", "readOnly": True}],
                "env": [{"name": "HF_HOME", "value": "/data/hf"}],
                "schedulerName": "volcano",
            },
        },
    },
    # Data-parallel learners on GPU worker pods (tests/unit/operator/test_operator_learners.py).
    "ddp_gpu_learners": {
        "resources": {"envRunners": 8, "learners": 4, "gpusPerLearner": 1, "cpusPerLearner": 2},
        "cluster": {"image": "kuberl/trainer:0.1.0-cuda", "nodeSelector": {"pool": "rl"}},
    },
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_golden(case: str) -> None:
    manifests = build_children(_job(**CASES[case]), attempt=0, resume="auto")
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
    assert ports["kuberl-metrics"] == 8080
    assert "policy-server" not in ports  # only with spec.external (test_policy_server_port_and_token…)
    # "metrics" is Ray's exporter, as KubeRay names it (and would add at 8080 to a container without it).
    assert ports["metrics"] != ports["kuberl-metrics"]
    assert (
        str(ports["metrics"])
        == spec["rayClusterSpec"]["headGroupSpec"]["rayStartParams"]["metrics-export-port"]
    )
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
    assert [m["kind"] for m in manifests] == ["ConfigMap", "NetworkPolicy", "RayJob"]
    assert all("ownerReferences" not in m["metadata"] for m in manifests)
    assert manifests[2]["spec"]["entrypoint"].endswith("--set resume=auto")
    assert [m["kind"] for m in render_job(parse_job(doc), defaults=Defaults(network_policy=False))] == [
        "ConfigMap",
        "RayJob",
    ]


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


def _groups(manifest: dict[str, Any]) -> dict[str, dict[str, Any]]:
    cluster = manifest["spec"]["rayClusterSpec"]
    return {"head": cluster["headGroupSpec"], **{g["groupName"]: g for g in cluster["workerGroupSpecs"]}}


def test_gpu_jobs_get_the_cuda_image_by_default() -> None:
    """A CPU build of torch cannot use the GPUs a job asks for (#11 §3): the default follows the job."""
    defaults = Defaults(image="registry.example/trainer:1", gpu_image="registry.example/trainer:1-cu128")
    images = lambda job: {  # noqa: E731
        c["image"]
        for g in _groups(build_ray_job(job, attempt=0, resume="auto", defaults=defaults)).values()
        for c in g["template"]["spec"]["containers"]
    }
    assert images(_job()) == {"registry.example/trainer:1"}
    assert images(_job(resources={"gpusPerLearner": 1})) == {"registry.example/trainer:1-cu128"}
    assert images(_job(resources={"gpusPerLearner": 1, "learners": 2})) == {
        "registry.example/trainer:1-cu128"
    }
    assert images(_job(cluster={"head": {"gpu": 1}})) == {"registry.example/trainer:1-cu128"}
    # A job naming its image keeps it.
    assert images(_job(resources={"gpusPerLearner": 1}, cluster={"image": "mine:2"})) == {"mine:2"}
    # Without operator settings (kuberl render): the project's published tags.
    plain = _groups(build_ray_job(_job(resources={"gpusPerLearner": 1}), attempt=0, resume="auto"))
    assert (
        plain["head"]["template"]["spec"]["containers"][0]["image"]
        == "ghcr.io/kuberl/kuberl-trainer:0.1.0-cu128"
    )


def test_finished_clusters_are_freed_at_once_and_the_deadline_is_what_is_left() -> None:
    spec = build_ray_job(_job(), attempt=0, resume="auto")["spec"]
    assert spec["shutdownAfterJobFinishes"] is True
    assert spec["ttlSecondsAfterFinished"] == 0
    assert "activeDeadlineSeconds" not in spec
    job = _job(activeDeadlineSeconds=3600, ttlSecondsAfterFinished=120)
    assert build_ray_job(job, attempt=0, resume="auto")["spec"]["activeDeadlineSeconds"] == 3600
    later = build_ray_job(job, attempt=2, resume="auto", deadline_seconds=600)["spec"]
    assert (later["activeDeadlineSeconds"], later["ttlSecondsAfterFinished"]) == (600, 120)
    # Past the deadline the caller must not start an attempt; if it does, it ends at once.
    assert (
        build_ray_job(job, attempt=2, resume="auto", deadline_seconds=-5)["spec"]["activeDeadlineSeconds"]
        == 1
    )


def test_every_ray_pod_is_restricted_with_shm_by_default() -> None:
    """Admissible under Pod Security "restricted", with the /dev/shm Ray wants."""
    for name, group in _groups(
        build_ray_job(_job(**CASES["ddp_gpu_learners"]), attempt=0, resume="auto")
    ).items():
        pod = group["template"]["spec"]
        (container,) = pod["containers"]
        assert pod["securityContext"] == {
            "runAsNonRoot": True,
            "seccompProfile": {"type": "RuntimeDefault"},
        }, name
        assert container["securityContext"] == {
            "allowPrivilegeEscalation": False,
            "capabilities": {"drop": ["ALL"]},
        }
        assert {"name": "dshm", "emptyDir": {"medium": "Memory"}} in pod["volumes"]
        assert {"name": "dshm", "mountPath": "/dev/shm"} in container["volumeMounts"]
        assert pod["automountServiceAccountToken"] is False
        assert not container.get("securityContext", {}).get("privileged")


def test_pod_customisation_is_merged_per_group() -> None:
    manifest = build_ray_job(_job(**CASES["customised"]), attempt=1, resume="auto")
    groups = _groups(manifest)
    head, runners = groups["head"]["template"], groups["env-runners"]["template"]
    # The Kueue label set on the RLTrainingJob reaches the RayJob; unrelated labels do not.
    labels = manifest["metadata"]["labels"]
    assert labels["kueue.x-k8s.io/queue-name"] == "team-a-queue"
    assert labels["volcano.sh/queue-name"] == "rl"
    assert "unrelated" not in labels
    assert labels["kuberl.io/job"] == "ppo-cartpole"
    assert manifest["metadata"]["annotations"] == {"example.com/cost-center": "42"}
    # Head placement of its own: GPU nodes for the head only.
    assert head["spec"]["nodeSelector"] == {"pool": "rl", "nvidia.com/gpu.present": "true"}
    assert runners["spec"]["nodeSelector"] == {"pool": "rl"}
    assert "tolerations" not in runners["spec"]
    assert head["spec"]["tolerations"][0]["key"] == "nvidia.com/gpu"
    assert head["metadata"]["annotations"] == {"cluster-autoscaler.kubernetes.io/safe-to-evict": "false"}
    assert "affinity" in runners["spec"]
    assert "affinity" not in head["spec"]
    for template in (head, runners):
        spec = template["spec"]
        (container,) = spec["containers"]
        assert template["metadata"]["labels"]["team"] == "a"
        assert template["metadata"]["labels"]["kuberl.io/attempt"] == "1"
        assert spec["imagePullSecrets"] == [{"name": "regcred"}]
        assert spec["schedulerName"] == "volcano"
        # The user's fields over the restricted defaults, which stay.
        assert spec["securityContext"] == {
            "runAsNonRoot": True,
            "seccompProfile": {"type": "RuntimeDefault"},
            "runAsUser": 1000,
            "fsGroup": 1000,
        }
        assert {"name": "data", "persistentVolumeClaim": {"claimName": "datasets"}} in spec["volumes"]
        assert {"name": "data", "mountPath": "/data", "readOnly": True} in container["volumeMounts"]
        assert {"name": "HF_HOME", "value": "/data/hf"} in container["env"]
        assert container["env"][0]["name"] == "KUBERL_JOB_NAME"


@pytest.mark.parametrize(
    ("cluster", "path", "words"),
    [
        ({"cpuWorkers": {"gpu": 1}}, "spec.cluster.cpuWorkers.gpu", "env-runner pods get no GPUs"),
        (
            {"pod": {"env": [{"name": "KUBERL_ATTEMPT", "value": "9"}]}},
            "spec.cluster.pod.env[0].name",
            "operator",
        ),
        ({"pod": {"labels": {"kuberl.io/job": "other"}}}, "spec.cluster.pod.labels", "set by the operator"),
        ({"labels": {"kueue.x-k8s.io/queue-name": "bad value!"}}, "spec.cluster.labels", "not a label value"),
        (
            {"pod": {"volumes": [{"name": "dshm", "emptyDir": {}}]}},
            "spec.cluster.pod.volumes[0].name",
            "adds itself",
        ),
        ({"pod": {"volumes": [{"name": "data"}]}}, "spec.cluster.pod.volumes[0]", "exactly one source"),
        (
            {"head": {"pod": {"volumeMounts": [{"name": "nope", "mountPath": "/x"}]}}},
            "spec.cluster",
            "names no volume",
        ),
        (
            {"pod": {"securityContext": {"runAsUser": -1}}},
            "spec.cluster.pod.securityContext.runAsUser",
            "greater",
        ),
        (
            {"pod": {"securityContext": {"seccompProfile": {"type": "Maybe"}}}},
            "spec.cluster.pod.securityContext.seccompProfile.type",
            "RuntimeDefault",
        ),
        ({"head": {"pod": {"hostNetwork": True}}}, "spec.cluster.head.pod.hostNetwork", "unknown field"),
    ],
)
def test_bad_pod_customisation_names_the_field(cluster: dict[str, Any], path: str, words: str) -> None:
    doc = yaml.safe_load(yaml.safe_dump(BASE))
    doc["spec"]["cluster"] = cluster
    with pytest.raises(SpecError) as info:
        parse_job(doc)
    problems = dict(info.value.problems)
    assert path in problems, problems
    assert words in problems[path]


def test_network_policy_keeps_ray_ports_to_the_job() -> None:
    job = _job(external={"enabled": True, "tokenSecret": {"name": "sim-token"}})
    policy = build_network_policy(job, attempt=2)
    assert policy["metadata"]["name"] == "ppo-cartpole-r2"
    assert policy["metadata"]["ownerReferences"][0]["uid"] == "1234-abcd"
    spec = policy["spec"]
    assert spec["podSelector"] == {"matchLabels": {"kuberl.io/job": "ppo-cartpole"}}
    own, dashboard, public = spec["ingress"]
    assert own == {"from": [{"podSelector": {"matchLabels": {"kuberl.io/job": "ppo-cartpole"}}}]}
    assert [p["port"] for p in dashboard["ports"]] == [8265]
    assert {"podSelector": {"matchLabels": {"batch.kubernetes.io/job-name": "ppo-cartpole-r2"}}} in dashboard[
        "from"
    ]
    # Open to all: the trainer's /metrics and /status, Ray's metrics, the token-protected policy server.
    ray_job = build_ray_job(job, attempt=2, resume="auto")
    ports = {p["name"]: p["containerPort"] for p in _head(ray_job)["ports"]}
    assert sorted(p["port"] for p in public["ports"]) == sorted(
        [ports["kuberl-metrics"], ports["metrics"], ports["policy-server"]]
    )
    assert not {6379, 8265, 10001} & {p["port"] for p in public["ports"]}
    assert ray_job["spec"]["rayClusterSpec"]["authOptions"] == {"mode": "token"}
    assert (
        "authOptions"
        not in build_ray_job(_job(cluster={"rayTokenAuth": False}), attempt=0, resume="auto")["spec"][
            "rayClusterSpec"
        ]
    )


def test_evaluation_actors_are_counted_in_the_env_runner_pods() -> None:
    """evaluation.numEnvRunners actors reserve cpusPerRunner each, like env runners: the RayJob's
    env-runners group has room for both (what the operator accepts is what the trainer starts)."""

    def replicas(**spec: Any) -> int:
        groups = build_ray_job(_job(**spec), attempt=0, resume="auto")["spec"]["rayClusterSpec"][
            "workerGroupSpecs"
        ]
        (group,) = [g for g in groups if g["groupName"] == "env-runners"]
        return int(group["replicas"])

    resources = {"envRunners": 4, "cpusPerRunner": 1, "localMode": "auto"}
    cluster = {"cpuWorkers": {"cpu": "2"}}
    alone = replicas(resources=resources, cluster=cluster)
    with_eval = replicas(resources=resources, cluster=cluster, evaluation={"interval": 1, "numEnvRunners": 3})
    assert (alone, with_eval) == (2, 4)  # 4 runners on 2-CPU pods; 4 + 3 actors: 4 pods
