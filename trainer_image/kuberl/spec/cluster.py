"""Kubernetes-only fields: how the operator sizes and places the Ray cluster. `kuberl run` ignores them."""

from __future__ import annotations

from typing import Literal

from pydantic import Field, field_validator, model_validator

from kuberl.spec.base import WireModel
from kuberl.spec.pod import PodOverrides, check_job_labels, check_mounts
from kuberl.spec.quantity import CpuQuantity, MemoryQuantity

# The trainer images (trainer_image/Dockerfile, TORCH_VARIANT build arg): a CPU build, and a CUDA build
# for jobs that ask for GPUs. The operator's chart can point both elsewhere (values trainerImage and
# trainerImageGPU).
TRAINER_VERSION = "0.1.0"
TRAINER_REPOSITORY = "ghcr.io/kuberl/kuberl-trainer"
CUDA_VARIANT = "cu128"
DEFAULT_IMAGE = f"{TRAINER_REPOSITORY}:{TRAINER_VERSION}"
DEFAULT_GPU_IMAGE = f"{TRAINER_REPOSITORY}:{TRAINER_VERSION}-{CUDA_VARIANT}"


class Toleration(WireModel):
    """A pod toleration (core/v1 Toleration), e.g. for tainted GPU nodes."""

    key: str | None = Field(None, description="Taint key the toleration applies to; empty means all keys.")
    operator: Literal["Exists", "Equal"] = Field("Equal", description="Exists or Equal.")
    value: str | None = Field(None, description="Taint value to match when operator is Equal.")
    effect: Literal["NoSchedule", "PreferNoSchedule", "NoExecute"] | None = Field(
        None, description="Taint effect to match; empty means all effects."
    )
    toleration_seconds: int | None = Field(None, description="For NoExecute: how long the pod stays bound.")


class HeadGroupSpec(WireModel):
    """The Ray head pod. It runs the trainer driver and (with resources.learners: 1) the learner, so that
    learner's GPUs are here."""

    cpu: CpuQuantity = Field("2", description="CPU request and limit of the head container.")
    memory: MemoryQuantity = Field("4Gi", description="Memory request and limit of the head container.")
    gpu: int = Field(
        0,
        ge=0,
        description=(
            "GPUs on the head pod; with resources.learners: 1 at least ceil(resources.gpusPerLearner) are given "
            "whatever this says (more learners get theirs in the learners worker group)."
        ),
    )
    node_selector: dict[str, str] = Field(
        default_factory=dict,
        description=(
            "Extra node selector for the head alone (e.g. GPU nodes for its learner), on top of "
            "cluster.nodeSelector; the env-runner pods are not pinned there."
        ),
    )
    tolerations: list[Toleration] = Field(default_factory=list, description="Extra tolerations for the head.")
    pod: PodOverrides | None = Field(None, description="Pod customisation of the head, over cluster.pod.")


class WorkerGroupSpec(WireModel):
    """A Ray worker group. Replicas default to what `resources` needs."""

    replicas: int | None = Field(
        None,
        ge=0,
        description="Worker pods; default: enough for resources.envRunners at resources.cpusPerRunner each.",
    )
    cpu: CpuQuantity = Field("2", description="CPU request and limit per worker pod.")
    memory: MemoryQuantity = Field("4Gi", description="Memory request and limit per worker pod.")
    gpu: int = Field(
        0,
        description=(
            "Must be 0: env runners sample on CPU, so GPUs here would sit idle (learner GPUs come from "
            "resources.gpusPerLearner)."
        ),
    )
    node_selector: dict[str, str] = Field(
        default_factory=dict, description="Extra node selector for this group."
    )
    tolerations: list[Toleration] = Field(
        default_factory=list, description="Extra tolerations for this group."
    )
    pod: PodOverrides | None = Field(None, description="Pod customisation of this group, over cluster.pod.")

    @field_validator("gpu")
    @classmethod
    def _no_gpus(cls, v: int) -> int:
        if v != 0:
            raise ValueError(
                "env-runner pods get no GPUs: env runners sample on CPU and would leave them idle; give the "
                "learner GPUs with resources.gpusPerLearner"
            )
        return v


class LearnerGroupSpec(WireModel):
    """The `learners` worker group of resources.learners > 1: one pod per data-parallel learner. Replicas and
    GPUs follow resources.learners and resources.gpusPerLearner; CPU, memory and node selector are a worker
    group's (cpuWorkers), with defaults derived from resources and the head."""

    cpu: CpuQuantity | None = Field(
        None,
        description=(
            "CPU request and limit per learner pod; default: ceil(resources.cpusPerLearner), at least 1. Ray "
            "places one learner per pod, whatever this says."
        ),
    )
    memory: MemoryQuantity | None = Field(
        None,
        description="Memory request and limit per learner pod; default: the head's (cluster.head.memory).",
    )
    node_selector: dict[str, str] = Field(
        default_factory=dict,
        description="Extra node selector for this group (e.g. a GPU node pool), on top of cluster.nodeSelector.",
    )
    tolerations: list[Toleration] = Field(
        default_factory=list, description="Extra tolerations for this group."
    )
    pod: PodOverrides | None = Field(None, description="Pod customisation of this group, over cluster.pod.")


class ClusterSpec(WireModel):
    """Placement and sizing of the Ray cluster the operator asks KubeRay for."""

    image: str | None = Field(
        None,
        min_length=1,
        description=(
            f"Trainer image. Default: the operator's CPU image ({DEFAULT_IMAGE}), or its CUDA image "
            f"({DEFAULT_GPU_IMAGE}) when any group asks for GPUs."
        ),
    )
    image_pull_policy: Literal["Always", "IfNotPresent", "Never"] = Field(
        "IfNotPresent", description="Image pull policy of every Ray container."
    )
    ray_version: str = Field(
        "2.60.0", pattern=r"^\d+\.\d+\.\d+$", description="Ray version inside the image."
    )
    head: HeadGroupSpec = Field(default_factory=HeadGroupSpec, description="The head pod.")
    cpu_workers: WorkerGroupSpec = Field(
        default_factory=WorkerGroupSpec, description="Worker group hosting the EnvRunner actors."
    )
    learners: LearnerGroupSpec | None = Field(
        None,
        description=(
            "Worker group of the data-parallel learners (resources.learners > 1; refused with 1 learner, whose "
            "learner runs on the head). Unset: derived from resources and the head."
        ),
    )
    node_selector: dict[str, str] = Field(
        default_factory=dict, description="Node selector for every Ray pod."
    )
    tolerations: list[Toleration] = Field(default_factory=list, description="Tolerations for every Ray pod.")
    priority_class_name: str | None = Field(None, description="PriorityClass of every Ray pod.")
    service_account: str | None = Field(
        None, description="ServiceAccount of the Ray pods (it needs no Kubernetes API permissions)."
    )
    gpu_resource_name: str = Field(
        "nvidia.com/gpu", description="Extended resource name used for GPU limits."
    )
    pod: PodOverrides | None = Field(None, description="Pod customisation of every Ray pod.")
    labels: dict[str, str] = Field(
        default_factory=dict,
        description=(
            "Labels of the RayJob (KubeRay copies them to its RayCluster): e.g. kueue.x-k8s.io/queue-name, "
            "volcano.sh/queue-name, yunikorn.apache.org/queue. kueue.x-k8s.io/queue-name on the "
            "RLTrainingJob itself is passed on too."
        ),
    )
    annotations: dict[str, str] = Field(default_factory=dict, description="Annotations of the RayJob.")
    ray_token_auth: bool = Field(
        True,
        description=(
            "Ray token authentication on the cluster's dashboard/Jobs API, client and GCS ports (KubeRay "
            "authOptions, KubeRay >= 1.5, Ray >= 2.52): KubeRay keeps the token in a Secret and gives it "
            "to the job's pods only."
        ),
    )

    @field_validator("labels")
    @classmethod
    def _labels(cls, v: dict[str, str]) -> dict[str, str]:
        return check_job_labels(v, values=True)

    @field_validator("annotations")
    @classmethod
    def _annotations(cls, v: dict[str, str]) -> dict[str, str]:
        return check_job_labels(v, values=False)

    @model_validator(mode="after")
    def _mounts(self) -> ClusterSpec:
        groups = {"head": self.head.pod, "cpuWorkers": self.cpu_workers.pod}
        if self.learners is not None:
            groups["learners"] = self.learners.pod
        for name, pod in groups.items():
            try:
                check_mounts([self.pod, pod])
            except ValueError as err:
                raise ValueError(f"{name}.pod: {err}") from None
        return self
