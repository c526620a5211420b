"""Pure builders: RLTrainingJob -> the ConfigMap and the KubeRay RayJob (ray.io/v1) that run it.

No environment variables, clock or API calls in here (as KubeRay's `controllers/ray/common`): the same
input always gives the same manifests, which is what `kuberl render` prints and what the golden tests pin.
"""

from __future__ import annotations

import copy
import json
import math
import re
from dataclasses import dataclass
from typing import Any

import yaml

from kuberl.spec import API_VERSION, KIND, RLTrainingJob, ports
from kuberl.spec.cluster import (
    DEFAULT_GPU_IMAGE,
    DEFAULT_IMAGE,
    LearnerGroupSpec,
    Toleration,
    WorkerGroupSpec,
)
from kuberl.spec.common import LEARNER_RESOURCE
from kuberl.spec.external import HOST_ENV, TOKEN_ENV
from kuberl.spec.pod import PodOverrides
from kuberl.spec.quantity import cpu_cores
from kuberl.spec.tune import trial_cpus
from kuberl_operator.labels import (
    LABEL_ATTEMPT,
    LABEL_JOB,
    LABEL_MANAGED_BY,
    LABEL_SUBMITTER_JOB,
    MANAGED_BY,
    PASSED_ON_LABELS,
    PORT_RAY_METRICS,
    PORT_TRAINER,
    SPEC_FILE,
    SPEC_MOUNT_DIR,
)

Manifest = dict[str, Any]

RAY_API_VERSION = "ray.io/v1"
HEAD_CONTAINER = "ray-head"
WORKER_CONTAINER = "ray-worker"
# Ray's head ports (GCS, dashboard and Jobs API, client): reachable only from the job's own pods.
RAY_HEAD_PORTS = {name: port for name, port, _ in ports.RAY_HEAD_CONTAINER_PORTS}
DASHBOARD_PORT = RAY_HEAD_PORTS["dashboard"]
# KubeRay's controller polls each RayJob's status through the head's dashboard API.
KUBERAY_OPERATOR_SELECTOR = {"app.kubernetes.io/name": "kuberay-operator"}
# Pod Security "restricted" (https://kubernetes.io/docs/concepts/security/pod-security-standards/):
# the trainer image runs as UID 1000, so runAsNonRoot holds; users may override any field.
POD_SECURITY_CONTEXT: Manifest = {"runAsNonRoot": True, "seccompProfile": {"type": "RuntimeDefault"}}
CONTAINER_SECURITY_CONTEXT: Manifest = {
    "allowPrivilegeEscalation": False,
    "capabilities": {"drop": ["ALL"]},
}
# Ray keeps its object store in /dev/shm; a container's default 64 MiB would push it to /tmp (slow).
SHM_VOLUME: Manifest = {"name": "dshm", "emptyDir": {"medium": "Memory"}}
SHM_MOUNT: Manifest = {"name": "dshm", "mountPath": "/dev/shm"}


@dataclass(frozen=True)
class Defaults:
    """The platform's choices, from the operator's settings (chart values), as plain inputs.

    image / gpu_image: the trainer image of jobs that name none — CPU, and CUDA for jobs that ask for
    GPUs (values trainerImage / trainerImageGPU → KUBERL_DEFAULT_IMAGE / KUBERL_DEFAULT_GPU_IMAGE).
    network_policy: create a NetworkPolicy per job (value networkPolicy.enabled →
    KUBERL_NETWORK_POLICY)."""

    image: str = DEFAULT_IMAGE
    gpu_image: str = DEFAULT_GPU_IMAGE
    network_policy: bool = True


DEFAULTS = Defaults()


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


def ray_job_labels(job: RLTrainingJob, attempt: int) -> dict[str, str]:
    """The RayJob's labels: the user's (spec.cluster.labels, and queue labels set on the RLTrainingJob
    itself, which Kueue and others look for on the workload), then kuberl's own, which always win."""
    passed = {k: v for k, v in job.metadata.labels.items() if k in PASSED_ON_LABELS}
    return {**passed, **job.spec.cluster.labels, **labels(job, attempt)}


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


def uses_gpus(job: RLTrainingJob) -> bool:
    """Whether any pod of the job gets GPUs (the head's learner, or data-parallel learner pods)."""
    return head_gpus(job) > 0 or (job.spec.resources.learners > 1 and job.spec.resources.gpus_per_learner > 0)


def trainer_image(job: RLTrainingJob, defaults: Defaults = DEFAULTS) -> str:
    """spec.cluster.image, else the CUDA default for a job with GPUs (a CPU build of torch cannot use
    them: the attempt would fail at start) and the CPU default otherwise."""
    if job.spec.cluster.image:
        return job.spec.cluster.image
    return defaults.gpu_image if uses_gpus(job) else defaults.image


def trainer_port(job: RLTrainingJob) -> int:
    """Port 0 ("pick a free one") is fine on a laptop; a Service needs a fixed port."""
    return ports.metrics_port(job.spec.metrics.port)


def policy_server_port(job: RLTrainingJob) -> int:
    """spec.external.port, with 0 ("pick a free one") mapped to the default: a Service needs a fixed port."""
    return ports.policy_server_port(job.spec.external.port)


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


def _merge_overrides(job: RLTrainingJob, group: PodOverrides | None) -> PodOverrides:
    """cluster.pod, then the group's pod: maps merged (the group wins), lists appended, scalars replaced."""
    layers = [o for o in (job.spec.cluster.pod, group) if o is not None]
    merged: Manifest = {}
    for layer in layers:
        for key, value in layer.model_dump(exclude_unset=True).items():
            old = merged.get(key)
            if isinstance(old, dict) and isinstance(value, dict):
                merged[key] = {**old, **value}
            elif isinstance(old, list) and isinstance(value, list):
                merged[key] = [*old, *value]
            else:
                merged[key] = value
    return PodOverrides.model_validate(merged)


def _deep_merge(base: Manifest, over: Manifest) -> Manifest:
    """A new mapping: `over` onto `base`, nested maps merged; nothing shared with either (the
    constants above must never be aliased into, or mutated through, a manifest)."""
    out = copy.deepcopy(base)
    for key, value in over.items():
        nested = isinstance(out.get(key), dict) and isinstance(value, dict)
        out[key] = _deep_merge(out[key], value) if nested else copy.deepcopy(value)
    return out


def _customise(container: Manifest, pod: Manifest, template_meta: Manifest, overrides: PodOverrides) -> None:
    """Merge the user's pod customisation onto what the builder produced (in place)."""
    container["env"] = [*container.get("env", []), *(e.to_wire() for e in overrides.env)]
    container["volumeMounts"] = [
        *container.get("volumeMounts", []),
        copy.deepcopy(SHM_MOUNT),
        *(m.to_wire() for m in overrides.volume_mounts),
    ]
    user_container_ctx = overrides.container_security_context
    container["securityContext"] = _deep_merge(
        CONTAINER_SECURITY_CONTEXT, user_container_ctx.to_wire() if user_container_ctx else {}
    )
    pod["volumes"] = [
        *pod.get("volumes", []),
        copy.deepcopy(SHM_VOLUME),
        *(v.to_wire() for v in overrides.volumes),
    ]
    user_pod_ctx = overrides.security_context
    pod["securityContext"] = _deep_merge(POD_SECURITY_CONTEXT, user_pod_ctx.to_wire() if user_pod_ctx else {})
    if overrides.image_pull_secrets:
        pod["imagePullSecrets"] = [s.to_wire() for s in overrides.image_pull_secrets]
    if overrides.affinity:
        pod["affinity"] = copy.deepcopy(overrides.affinity)
    if overrides.topology_spread_constraints:
        pod["topologySpreadConstraints"] = copy.deepcopy(overrides.topology_spread_constraints)
    if overrides.scheduler_name:
        pod["schedulerName"] = overrides.scheduler_name
    if overrides.runtime_class_name:
        pod["runtimeClassName"] = overrides.runtime_class_name
    # kuberl's labels come last: the operator and the PodMonitor select pods by them.
    template_meta["labels"] = {**overrides.labels, **template_meta["labels"]}
    if overrides.annotations:
        template_meta["annotations"] = dict(overrides.annotations)


def _pod_template(
    job: RLTrainingJob,
    container: Manifest,
    *,
    attempt: int,
    node_selector: dict[str, str],
    tolerations: list[Toleration],
    overrides: PodOverrides | None,
    volumes: list[Manifest] | None = None,
) -> Manifest:
    """A group's pod template: the container, cluster-wide then group placement, restricted security
    defaults, /dev/shm, then the user's customisation (cluster.pod, then the group's pod)."""
    cluster = job.spec.cluster
    spec: Manifest = {"containers": [container]}
    selector = {**cluster.node_selector, **node_selector}
    if selector:
        spec["nodeSelector"] = selector
    all_tolerations = [*cluster.tolerations, *tolerations]
    if all_tolerations:
        spec["tolerations"] = [t.to_wire() for t in all_tolerations]
    if cluster.priority_class_name:
        spec["priorityClassName"] = cluster.priority_class_name
    if cluster.service_account:
        spec["serviceAccountName"] = cluster.service_account
    # The trainer pods need no Kubernetes credentials (DESIGN: the operator reads /status instead).
    spec["automountServiceAccountToken"] = False
    if volumes:
        spec["volumes"] = volumes
    meta: Manifest = {"labels": labels(job, attempt)}
    _customise(container, spec, meta, _merge_overrides(job, overrides))
    return {"metadata": meta, "spec": spec}


def _ray_metrics_port(job: RLTrainingJob) -> int:
    return ports.ray_metrics_port(trainer_port(job))


def _head_group(job: RLTrainingJob, *, attempt: int, config_map: str, defaults: Defaults) -> Manifest:
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
        "image": trainer_image(job, defaults),
        "imagePullPolicy": cluster.image_pull_policy,
        "resources": _resources(head.cpu, head.memory, head_gpus(job), cluster.gpu_resource_name),
        "ports": [
            *({"name": name, "containerPort": port} for name, port in RAY_HEAD_PORTS.items()),
            # "metrics" is Ray's own exporter on every Ray pod (KubeRay's convention, and what its
            # PodMonitor scrapes); the trainer's /metrics and /status have a port of their own.
            {"name": PORT_RAY_METRICS, "containerPort": _ray_metrics_port(job)},
            # KubeRay copies the head container's ports into the head Service: /status is read there.
            {"name": PORT_TRAINER, "containerPort": trainer_port(job)},
            *policy_ports,
        ],
        "env": env,
        "volumeMounts": [{"name": "kuberl-spec", "mountPath": SPEC_MOUNT_DIR, "readOnly": True}],
    }
    template = _pod_template(
        job,
        container,
        attempt=attempt,
        node_selector=head.node_selector,
        tolerations=head.tolerations,
        overrides=head.pod,
        volumes=[{"name": "kuberl-spec", "configMap": {"name": config_map}}],
    )
    start: dict[str, str] = {"dashboard-host": "0.0.0.0", "metrics-export-port": str(_ray_metrics_port(job))}
    start["num-gpus"] = str(head_gpus(job))  # explicit: Ray must not count GPUs the pod does not own
    return {"rayStartParams": start, "template": template}


def _worker_group(
    job: RLTrainingJob,
    *,
    name: str,
    group: WorkerGroupSpec,
    replicas: int,
    gpus: int,
    attempt: int,
    defaults: Defaults,
    ray_resources: dict[str, int] | None = None,
) -> Manifest:
    cluster = job.spec.cluster
    container: Manifest = {
        "name": WORKER_CONTAINER,
        "image": trainer_image(job, defaults),
        "imagePullPolicy": cluster.image_pull_policy,
        "resources": _resources(group.cpu, group.memory, gpus, cluster.gpu_resource_name),
        "env": [{"name": "KUBERL_JOB_NAME", "value": job.metadata.name}, *_credential_env(job)],
        "ports": [{"name": PORT_RAY_METRICS, "containerPort": _ray_metrics_port(job)}],
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
        "template": _pod_template(
            job,
            container,
            attempt=attempt,
            node_selector=group.node_selector,
            tolerations=group.tolerations,
            overrides=group.pod,
        ),
    }


def cpu_worker_replicas(job: RLTrainingJob) -> int:
    """Enough pods for every EnvRunner and evaluation actor at cpusPerRunner each (explicit replicas win)."""
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
    # The evaluation actors (evaluation.numEnvRunners) reserve cpusPerRunner each, as env runners do.
    return math.ceil((res.env_runners + job.spec.evaluation.num_env_runners) / per_pod)


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


def learner_group(job: RLTrainingJob, *, attempt: int, defaults: Defaults = DEFAULTS) -> Manifest | None:
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
        tolerations=sized.tolerations,
        pod=sized.pod,
    )
    return _worker_group(
        job,
        name="learners",
        group=group,
        replicas=res.learners,
        gpus=math.ceil(res.gpus_per_learner),
        attempt=attempt,
        defaults=defaults,
        ray_resources={LEARNER_RESOURCE: 1},
    )


def entrypoint(resume: str) -> str:
    # `resume` is validated by the spec model (auto, never, or a URI without spaces); quote it anyway.
    return f"kuberl run {SPEC_MOUNT_DIR}/{SPEC_FILE} --set resume={_shell_quote(resume)}"


def _shell_quote(value: str) -> str:
    return value if re.fullmatch(r"[\w@%+=:,./-]+", value) else "'" + value.replace("'", "'\"'\"'") + "'"


def build_ray_job(
    job: RLTrainingJob,
    *,
    attempt: int,
    resume: str,
    defaults: Defaults = DEFAULTS,
    deadline_seconds: int | None = None,
) -> Manifest:
    """The RayJob of one attempt. KubeRay retries nothing (`backoffLimit: 0`): kuberl retries, resuming.

    `deadline_seconds` is what is left of spec.activeDeadlineSeconds for this attempt (the deadline is
    job-wide, counted from the job's start; the caller knows the clock); None means the whole of it."""
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
                defaults=defaults,
            )
        )
    learners = learner_group(job, attempt=attempt, defaults=defaults)
    if learners is not None:
        workers.append(learners)
    cluster_spec: Manifest = {
        "rayVersion": spec.cluster.ray_version,
        "headGroupSpec": _head_group(job, attempt=attempt, config_map=names.config_map, defaults=defaults),
        "workerGroupSpecs": workers,
    }
    if spec.cluster.ray_token_auth:
        # KubeRay creates the token Secret and hands it to the job's Ray pods and its submitter.
        cluster_spec["authOptions"] = {"mode": "token"}
    ray_spec: Manifest = {
        "entrypoint": entrypoint(resume),
        # KubeRay deletes the Ray cluster (pods, GPUs) ttlSecondsAfterFinished after the job ends.
        "shutdownAfterJobFinishes": True,
        "ttlSecondsAfterFinished": spec.ttl_seconds_after_finished,
        "backoffLimit": 0,
        "suspend": spec.suspend,
        "rayClusterSpec": cluster_spec,
    }
    deadline = deadline_seconds if deadline_seconds is not None else spec.active_deadline_seconds
    if deadline is not None:
        ray_spec["activeDeadlineSeconds"] = max(1, deadline)
    metadata = _metadata(job, names.ray_job, attempt)
    metadata["labels"] = ray_job_labels(job, attempt)
    if spec.cluster.annotations:
        metadata["annotations"] = dict(spec.cluster.annotations)
    return {"apiVersion": RAY_API_VERSION, "kind": "RayJob", "metadata": metadata, "spec": ray_spec}


def build_network_policy(job: RLTrainingJob, *, attempt: int) -> Manifest:
    """Ingress to the job's Ray pods: Ray's own ports (GCS, dashboard/Jobs API, client and the ports
    between Ray nodes) only from the job's pods, the dashboard also from KubeRay's controller and this
    attempt's submitter pod; the trainer's /metrics and /status, Ray's metrics and the policy server
    (token-protected) from anywhere, so the operator and Prometheus reach them.

    Without it, any pod that reaches the head Service can submit a Ray job and read the head's
    environment (S3 keys, the policy-server token)."""
    names = child_names(job, attempt)
    own = {"podSelector": {"matchLabels": {LABEL_JOB: job.metadata.name}}}
    public_ports = [trainer_port(job), _ray_metrics_port(job)]
    if job.spec.external.enabled:
        public_ports.append(policy_server_port(job))
    return {
        "apiVersion": "networking.k8s.io/v1",
        "kind": "NetworkPolicy",
        "metadata": _metadata(job, names.ray_job, attempt),
        "spec": {
            "podSelector": {"matchLabels": {LABEL_JOB: job.metadata.name}},
            "policyTypes": ["Ingress"],
            "ingress": [
                {"from": [own]},
                {
                    "from": [
                        {"namespaceSelector": {}, "podSelector": {"matchLabels": KUBERAY_OPERATOR_SELECTOR}},
                        # KubeRay's submitter is a batch Job named after the RayJob.
                        {"podSelector": {"matchLabels": {LABEL_SUBMITTER_JOB: names.ray_job}}},
                    ],
                    "ports": [{"protocol": "TCP", "port": DASHBOARD_PORT}],
                },
                {"ports": [{"protocol": "TCP", "port": p} for p in public_ports]},
            ],
        },
    }


def build_children(
    job: RLTrainingJob,
    *,
    attempt: int,
    resume: str,
    defaults: Defaults = DEFAULTS,
    deadline_seconds: int | None = None,
) -> list[Manifest]:
    """One attempt's children, in creation order: the ConfigMap, the NetworkPolicy (unless the platform
    turned it off), then the RayJob."""
    children = [build_config_map(job, attempt=attempt)]
    if defaults.network_policy:
        children.append(build_network_policy(job, attempt=attempt))
    children.append(
        build_ray_job(
            job, attempt=attempt, resume=resume, defaults=defaults, deadline_seconds=deadline_seconds
        )
    )
    return children


def render_job(job: RLTrainingJob, *, defaults: Defaults = DEFAULTS) -> list[Manifest]:
    """What the operator creates for a new job: attempt 0's children."""
    return build_children(job, attempt=0, resume=job.spec.resume, defaults=defaults)
