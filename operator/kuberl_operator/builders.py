"""Pure builders: RLTrainingJob -> the ConfigMap and the KubeRay RayJob (ray.io/v1) that run it.

No environment variables, clock or API calls in here (as KubeRay's `controllers/ray/common`): the same
input always gives the same manifests, which is what `kuberl render` prints and what the golden tests pin.
"""

from __future__ import annotations

import json
import math
import re
from dataclasses import dataclass
from typing import Any

import yaml

from kuberl.spec import API_VERSION, KIND, RLTrainingJob
from kuberl.spec.cluster import LearnerGroupSpec, WorkerGroupSpec
from kuberl.spec.common import LEARNER_RESOURCE
from kuberl.spec.external import DEFAULT_PORT as DEFAULT_POLICY_SERVER_PORT
from kuberl.spec.external import HOST_ENV, TOKEN_ENV
from kuberl.spec.quantity import cpu_cores
from kuberl.spec.tune import trial_cpus
from kuberl_operator.labels import (
    LABEL_ATTEMPT,
    LABEL_JOB,
    LABEL_MANAGED_BY,
    MANAGED_BY,
    SPEC_FILE,
    SPEC_MOUNT_DIR,
)

Manifest = dict[str, Any]

RAY_API_VERSION = "ray.io/v1"
# The trainer serves /metrics and /status on spec.metrics.port. Ray's own metrics exporter would also
# default to 8080 on the head, so it gets a port of its own (set explicitly in rayStartParams).
DEFAULT_TRAINER_PORT = 8080
RAY_METRICS_PORTS = (8079, 8078)
HEAD_CONTAINER = "ray-head"
WORKER_CONTAINER = "ray-worker"


@dataclass(frozen=True)
class ChildNames:
    """Deterministic names of one attempt's children, saved in status before anything is created."""

    ray_job: str
    config_map: str


def child_names(job: RLTrainingJob, attempt: int) -> ChildNames:
    """`<job>-r<attempt>`: a new attempt is a new RayJob, so a retry never races the old one's deletion."""
    return names_for(job.metadata.name, attempt)


def names_for(job_name: str, attempt: int) -> ChildNames:
    base = f"{job_name}-r{attempt}"
    return ChildNames(ray_job=base, config_map=f"{base}-spec")


def labels(job: RLTrainingJob, attempt: int) -> dict[str, str]:
    return {LABEL_JOB: job.metadata.name, LABEL_ATTEMPT: str(attempt), LABEL_MANAGED_BY: MANAGED_BY}


def owner_references(job: RLTrainingJob) -> list[Manifest]:
    """The controller reference; empty when the job has no uid yet (a dry run of a file)."""
    uid = (job.metadata.model_extra or {}).get("uid")
    if not uid:
        return []
    return [
        {
            "apiVersion": API_VERSION,
            "kind": KIND,
            "name": job.metadata.name,
            "uid": str(uid),
            "controller": True,
            "blockOwnerDeletion": True,
        }
    ]


def _metadata(job: RLTrainingJob, name: str, attempt: int) -> Manifest:
    meta: Manifest = {"name": name, "labels": labels(job, attempt)}
    if job.metadata.namespace:
        meta["namespace"] = job.metadata.namespace
    refs = owner_references(job)
    if refs:
        meta["ownerReferences"] = refs
    return meta


def trainer_port(job: RLTrainingJob) -> int:
    """Port 0 ("pick a free one") is fine on a laptop; a Service needs a fixed port."""
    return job.spec.metrics.port or DEFAULT_TRAINER_PORT


def policy_server_port(job: RLTrainingJob) -> int:
    """spec.external.port, with 0 ("pick a free one") mapped to the default: a Service needs a fixed port."""
    return job.spec.external.port or DEFAULT_POLICY_SERVER_PORT


def job_document(job: RLTrainingJob) -> Manifest:
    """What the trainer reads from the mounted ConfigMap: the fields the user set, in camelCase.

    Defaults are left out on purpose: the trainer image may run another kuberl version than the operator,
    and it should apply its own defaults rather than fail on a field it no longer has."""
    meta: Manifest = {"name": job.metadata.name}
    if job.metadata.namespace:
        meta["namespace"] = job.metadata.namespace
    spec: Manifest = job.spec.model_dump(mode="json", by_alias=True, exclude_unset=True)
    # The discriminator lives in spec.algorithm; the trainer re-injects it when it parses the document.
    if isinstance(spec.get("config"), dict):
        spec["config"].pop("algorithm", None)
    spec["metrics"] = {**spec.get("metrics", {}), "port": trainer_port(job)}
    if job.spec.external.enabled:
        spec["external"] = {**spec.get("external", {}), "port": policy_server_port(job)}
    return {"apiVersion": API_VERSION, "kind": KIND, "metadata": meta, "spec": spec}


def build_config_map(job: RLTrainingJob, *, attempt: int = 0) -> Manifest:
    return {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": _metadata(job, child_names(job, attempt).config_map, attempt),
        "data": {SPEC_FILE: yaml.safe_dump(job_document(job), sort_keys=False)},
    }


def _resources(cpu: str, memory: str, gpus: int, gpu_name: str) -> Manifest:
    # Requests equal limits: Ray sizes itself from the limits, and a Guaranteed pod is not evicted first.
    limits: Manifest = {"cpu": cpu, "memory": memory}
    if gpus > 0:
        limits[gpu_name] = gpus
    return {"requests": dict(limits), "limits": limits}


def _credential_env(job: RLTrainingJob) -> list[Manifest]:
    """S3 credentials as secretKeyRef env vars: the Secret's values never appear in any manifest."""
    creds = job.spec.checkpoint.credentials
    if creds is None:
        return []
    pairs = [
        ("AWS_ACCESS_KEY_ID", creds.access_key_id_key),
        ("AWS_SECRET_ACCESS_KEY", creds.secret_access_key_key),
    ]
    optional = [("AWS_ENDPOINT_URL", creds.endpoint_url_key), ("AWS_DEFAULT_REGION", creds.region_key)]
    env = [
        {"name": n, "valueFrom": {"secretKeyRef": {"name": creds.secret_name, "key": k}}} for n, k in pairs
    ]
    env += [
        {"name": n, "valueFrom": {"secretKeyRef": {"name": creds.secret_name, "key": k}}}
        for n, k in optional
        if k is not None
    ]
    return env


def _policy_server(job: RLTrainingJob) -> tuple[list[Manifest], list[Manifest]]:
    """(ports, env) of the head container for spec.external: a named port (KubeRay copies it into the
    head Service), binding on all interfaces, and the token from its Secret by secretKeyRef (the
    operator never reads the Secret)."""
    ext = job.spec.external
    if not ext.enabled:
        return [], []
    env: list[Manifest] = [{"name": HOST_ENV, "value": "0.0.0.0"}]
    if ext.token_secret is not None:
        ref = {"name": ext.token_secret.name, "key": ext.token_secret.key}
        env.append({"name": TOKEN_ENV, "valueFrom": {"secretKeyRef": ref}})
    return [{"name": "policy-server", "containerPort": policy_server_port(job)}], env


def _pod_spec(job: RLTrainingJob, container: Manifest, *, extra_selector: dict[str, str]) -> Manifest:
    cluster = job.spec.cluster
    spec: Manifest = {"containers": [container]}
    selector = {**cluster.node_selector, **extra_selector}
    if selector:
        spec["nodeSelector"] = selector
    if cluster.tolerations:
        spec["tolerations"] = [t.to_wire() for t in cluster.tolerations]
    if cluster.priority_class_name:
        spec["priorityClassName"] = cluster.priority_class_name
    if cluster.service_account:
        spec["serviceAccountName"] = cluster.service_account
    # The trainer pods need no Kubernetes credentials (DESIGN: the operator reads /status instead).
    spec["automountServiceAccountToken"] = False
    return spec


def _ray_metrics_port(job: RLTrainingJob) -> int:
    return next(p for p in RAY_METRICS_PORTS if p != trainer_port(job))


def _head_group(job: RLTrainingJob, *, attempt: int, config_map: str) -> Manifest:
    cluster = job.spec.cluster
    head = cluster.head
    policy_ports, policy_env = _policy_server(job)
    env = [
        {"name": "KUBERL_JOB_NAME", "value": job.metadata.name},
        {"name": "KUBERL_NAMESPACE", "valueFrom": {"fieldRef": {"fieldPath": "metadata.namespace"}}},
        {"name": "KUBERL_ATTEMPT", "value": str(attempt)},
        *_credential_env(job),
        *policy_env,
    ]
    container: Manifest = {
        "name": HEAD_CONTAINER,
        "image": cluster.image,
        "imagePullPolicy": cluster.image_pull_policy,
        "resources": _resources(head.cpu, head.memory, head_gpus(job), cluster.gpu_resource_name),
        "ports": [
            {"name": "gcs-server", "containerPort": 6379},
            {"name": "dashboard", "containerPort": 8265},
            {"name": "client", "containerPort": 10001},
            {"name": "ray-metrics", "containerPort": _ray_metrics_port(job)},
            # KubeRay copies the head container's ports into the head Service: /status is read there.
            {"name": "metrics", "containerPort": trainer_port(job)},
            *policy_ports,
        ],
        "env": env,
        "volumeMounts": [{"name": "kuberl-spec", "mountPath": SPEC_MOUNT_DIR, "readOnly": True}],
    }
    pod = _pod_spec(job, container, extra_selector={})
    pod["volumes"] = [{"name": "kuberl-spec", "configMap": {"name": config_map}}]
    start: dict[str, str] = {"dashboard-host": "0.0.0.0", "metrics-export-port": str(_ray_metrics_port(job))}
    start["num-gpus"] = str(head_gpus(job))  # explicit: Ray must not count GPUs the pod does not own
    return {
        "rayStartParams": start,
        "template": {"metadata": {"labels": labels(job, attempt)}, "spec": pod},
    }


def _worker_group(
    job: RLTrainingJob,
    *,
    name: str,
    group: WorkerGroupSpec,
    replicas: int,
    gpus: int,
    attempt: int,
    ray_resources: dict[str, int] | None = None,
) -> Manifest:
    cluster = job.spec.cluster
    container: Manifest = {
        "name": WORKER_CONTAINER,
        "image": cluster.image,
        "imagePullPolicy": cluster.image_pull_policy,
        "resources": _resources(group.cpu, group.memory, gpus, cluster.gpu_resource_name),
        "env": [{"name": "KUBERL_JOB_NAME", "value": job.metadata.name}, *_credential_env(job)],
    }
    start = {"metrics-export-port": str(_ray_metrics_port(job))}
    if gpus > 0:
        start["num-gpus"] = str(gpus)
    else:
        # Ray would otherwise detect GPUs it may see on the node and schedule learners there.
        start["num-gpus"] = "0"
    if ray_resources:
        # Custom Ray resources, in the quoted-JSON form KubeRay passes to `ray start --resources`.
        start["resources"] = json.dumps(json.dumps(ray_resources, sort_keys=True))
    return {
        "groupName": name,
        "replicas": replicas,
        "minReplicas": replicas,
        "maxReplicas": replicas,
        "rayStartParams": start,
        "template": {
            "metadata": {"labels": labels(job, attempt)},
            "spec": _pod_spec(job, container, extra_selector=group.node_selector),
        },
    }


def cpu_worker_replicas(job: RLTrainingJob) -> int:
    """Enough pods for every EnvRunner actor at cpusPerRunner each (explicit replicas win)."""
    group = job.spec.cluster.cpu_workers
    if group.replicas is not None:
        return group.replicas
    res = job.spec.resources
    if job.spec.tune is not None:
        # spec.tune: maxConcurrentTrials trials at once, each a trial actor plus its env runners
        # (kuberl.spec.tune.trial_cpus); the head keeps its CPUs for the Tune driver.
        trials_cpus = job.spec.tune.max_concurrent_trials * trial_cpus(res)
        return math.ceil(trials_cpus / cpu_cores(group.cpu))
    per_pod = max(1, math.floor(cpu_cores(group.cpu) / res.cpus_per_runner))
    return math.ceil(res.env_runners / per_pod)


def head_gpus(job: RLTrainingJob) -> int:
    """GPUs of the head pod. One learner trains in the driver process, which KubeRay runs on the head,
    so its GPUs must be there; data-parallel learners (learners > 1) have their own pods instead."""
    res = job.spec.resources
    if res.learners > 1:
        return job.spec.cluster.head.gpu
    if job.spec.tune is not None:  # each concurrent trial's learner (the only GPU node is the head)
        return max(
            job.spec.cluster.head.gpu, math.ceil(res.gpus_per_learner * job.spec.tune.max_concurrent_trials)
        )
    return max(job.spec.cluster.head.gpu, math.ceil(res.gpus_per_learner))


def learner_group(job: RLTrainingJob, *, attempt: int) -> Manifest | None:
    """With learners > 1: one pod per data-parallel learner actor, each with ceil(gpusPerLearner) GPUs and
    (unless spec.cluster.learners sizes them) ceil(cpusPerLearner) CPUs and the memory the head has for the
    learner it would otherwise hold. The pods advertise the custom Ray resource `kuberl_learner: 1`, which
    the trainer's learner actors request (kuberl.core.learner_group), so a learner never lands on an
    env-runner pod nor two on one pod."""
    res = job.spec.resources
    if res.learners == 1:
        return None
    cluster = job.spec.cluster
    sized = cluster.learners or LearnerGroupSpec()
    group = WorkerGroupSpec(
        cpu=sized.cpu or str(max(1, math.ceil(res.cpus_per_learner))),
        memory=sized.memory or cluster.head.memory,
        node_selector=sized.node_selector,
    )
    return _worker_group(
        job,
        name="learners",
        group=group,
        replicas=res.learners,
        gpus=math.ceil(res.gpus_per_learner),
        attempt=attempt,
        ray_resources={LEARNER_RESOURCE: 1},
    )


def entrypoint(resume: str) -> str:
    # `resume` is validated by the spec model (auto, never, or a URI without spaces); quote it anyway.
    return f"kuberl run {SPEC_MOUNT_DIR}/{SPEC_FILE} --set resume={_shell_quote(resume)}"


def _shell_quote(value: str) -> str:
    return value if re.fullmatch(r"[\w@%+=:,./-]+", value) else "'" + value.replace("'", "'\"'\"'") + "'"


def build_ray_job(job: RLTrainingJob, *, attempt: int, resume: str) -> Manifest:
    """The RayJob of one attempt. KubeRay retries nothing (`backoffLimit: 0`): kuberl retries, resuming."""
    names = child_names(job, attempt)
    spec = job.spec
    workers: list[Manifest] = []
    cpu_replicas = cpu_worker_replicas(job)
    if cpu_replicas > 0:
        workers.append(
            _worker_group(
                job,
                name="env-runners",
                group=spec.cluster.cpu_workers,
                replicas=cpu_replicas,
                gpus=0,
                attempt=attempt,
            )
        )
    learners = learner_group(job, attempt=attempt)
    if learners is not None:
        workers.append(learners)
    ray_spec: Manifest = {
        "entrypoint": entrypoint(resume),
        "shutdownAfterJobFinishes": True,
        "ttlSecondsAfterFinished": spec.ttl_seconds_after_finished,
        "backoffLimit": 0,
        "suspend": spec.suspend,
        "rayClusterSpec": {
            "rayVersion": spec.cluster.ray_version,
            "headGroupSpec": _head_group(job, attempt=attempt, config_map=names.config_map),
            "workerGroupSpecs": workers,
        },
    }
    if spec.active_deadline_seconds is not None:
        ray_spec["activeDeadlineSeconds"] = spec.active_deadline_seconds
    return {
        "apiVersion": RAY_API_VERSION,
        "kind": "RayJob",
        "metadata": _metadata(job, names.ray_job, attempt),
        "spec": ray_spec,
    }


def render_job(job: RLTrainingJob) -> list[Manifest]:
    """What the operator creates for a new job: the ConfigMap, then the RayJob of attempt 0."""
    return [build_config_map(job, attempt=0), build_ray_job(job, attempt=0, resume=job.spec.resume)]
