"""Pod customisation of the Ray pods (Kubernetes only): what a KubeRay user would put in a group's pod
template — security contexts, pull secrets, affinity, volumes, env, labels, annotations — merged by the
operator onto the pod it builds (kuberl_operator.builders).

Small core/v1 shapes are typed here so a typo is an error that names the field. `affinity`, the volume
sources and `topologySpreadConstraints` are kept as free-form objects (`x-kubernetes-preserve-unknown-
fields` in the CRD): core/v1's schemas for them run to thousands of lines, and the API server validates
them again when KubeRay creates the pods.
"""

from __future__ import annotations

import re
from typing import Any, Literal

from pydantic import Field, field_validator, model_validator

from kuberl.spec.base import LenientModel, WireModel

# Qualified names as in apimachinery's validation (label keys, annotation keys): an optional DNS
# subdomain prefix and a name of at most 63 characters.
_NAME = r"[A-Za-z0-9]([-A-Za-z0-9_.]{0,61}[A-Za-z0-9])?"
_QUALIFIED = re.compile(rf"^([a-z0-9]([-a-z0-9.]{{0,251}}[a-z0-9])?/)?{_NAME}$")
_LABEL_VALUE = re.compile(rf"^({_NAME})?$")
_DNS_LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$")
_ENV_NAME = re.compile(r"^[-._a-zA-Z][-._a-zA-Z0-9]*$")
# Names the operator sets itself: a user value would silently break the trainer or its Ray cluster.
RESERVED_PREFIXES = ("kuberl.io/", "ray.io/")
RESERVED_ENV_PREFIXES = ("KUBERL_", "RAY_")
RESERVED_VOLUMES = ("kuberl-spec", "dshm")


def _check_labels(labels: dict[str, str], *, values: bool) -> dict[str, str]:
    for key, value in labels.items():
        if not _QUALIFIED.match(key):
            raise ValueError(f"{key[:80]!r} is not a valid label/annotation key (a DNS prefix and a name)")
        if key.startswith(RESERVED_PREFIXES):
            raise ValueError(f"{key!r}: keys under {', '.join(RESERVED_PREFIXES)} are set by the operator")
        if values and not _LABEL_VALUE.match(value):
            raise ValueError(
                f"label {key!r}: {value[:80]!r} is not a label value (at most 63 characters: "
                "alphanumerics, '-', '_', '.')"
            )
    return labels


class SeccompProfile(WireModel):
    type: Literal["RuntimeDefault", "Localhost", "Unconfined"] = Field(
        ..., description="Seccomp profile kind."
    )
    localhost_profile: str | None = Field(None, description="Profile file, for type Localhost.")


class Capabilities(WireModel):
    add: list[str] | None = Field(None, description="Capabilities to add.")
    drop: list[str] | None = Field(None, description="Capabilities to drop (default: ALL).")


class PodSecurityContext(WireModel):
    """core/v1 PodSecurityContext (the fields Pod Security Standards look at, and fsGroup)."""

    run_as_non_root: bool | None = Field(None, description="Refuse to start containers running as root.")
    run_as_user: int | None = Field(None, ge=0, description="UID of the containers' processes.")
    run_as_group: int | None = Field(None, ge=0, description="GID of the containers' processes.")
    fs_group: int | None = Field(None, ge=0, description="Group owning mounted volumes.")
    supplemental_groups: list[int] | None = Field(None, description="Extra groups.")
    seccomp_profile: SeccompProfile | None = Field(None, description="Seccomp profile of every container.")


class ContainerSecurityContext(WireModel):
    """core/v1 SecurityContext of the Ray container."""

    run_as_non_root: bool | None = Field(None, description="Refuse to start as root.")
    run_as_user: int | None = Field(None, ge=0, description="UID of the process.")
    run_as_group: int | None = Field(None, ge=0, description="GID of the process.")
    allow_privilege_escalation: bool | None = Field(
        None, description="Allow setuid binaries to gain privileges."
    )
    privileged: bool | None = Field(None, description="Run privileged (refused by Pod Security baseline).")
    read_only_root_filesystem: bool | None = Field(None, description="Mount the root filesystem read-only.")
    capabilities: Capabilities | None = Field(None, description="Linux capabilities.")
    seccomp_profile: SeccompProfile | None = Field(None, description="Seccomp profile.")


class EnvVar(WireModel):
    """core/v1 EnvVar: a literal value or a valueFrom reference (secretKeyRef, configMapKeyRef, …)."""

    name: str = Field(..., description="Variable name.")
    value: str | None = Field(None, description="Literal value.")
    value_from: dict[str, Any] | None = Field(
        None, description="core/v1 EnvVarSource (secretKeyRef, configMapKeyRef, fieldRef, resourceFieldRef)."
    )

    @field_validator("name")
    @classmethod
    def _name(cls, v: str) -> str:
        if not _ENV_NAME.match(v):
            raise ValueError(f"{v[:80]!r} is not an environment variable name")
        if v.startswith(RESERVED_ENV_PREFIXES):
            raise ValueError(
                f"{v!r}: variables starting {' or '.join(RESERVED_ENV_PREFIXES)} are the operator's"
            )
        return v

    @model_validator(mode="after")
    def _one_source(self) -> EnvVar:
        if self.value is not None and self.value_from is not None:
            raise ValueError("set value or valueFrom, not both")
        return self


class Volume(LenientModel):
    """core/v1 Volume: a name and one volume source (persistentVolumeClaim, secret, configMap, emptyDir,
    csi, …), kept as written."""

    name: str = Field(..., description="Volume name, referenced by volumeMounts.")

    @field_validator("name")
    @classmethod
    def _name(cls, v: str) -> str:
        if not _DNS_LABEL.match(v):
            raise ValueError(f"{v[:80]!r} is not a volume name (a DNS label)")
        if v in RESERVED_VOLUMES:
            raise ValueError(f"{v!r} is a volume the operator adds itself ({', '.join(RESERVED_VOLUMES)})")
        return v

    @model_validator(mode="after")
    def _one_source(self) -> Volume:
        if len(self.model_extra or {}) != 1:
            raise ValueError(
                f"volume {self.name!r} needs exactly one source (e.g. persistentVolumeClaim, secret)"
            )
        return self


class VolumeMount(WireModel):
    """core/v1 VolumeMount in the Ray container."""

    name: str = Field(..., description="A volume of this pod (volumes).")
    mount_path: str = Field(..., pattern=r"^/", description="Absolute path in the container.")
    read_only: bool | None = Field(None, description="Mount read-only.")
    sub_path: str | None = Field(None, description="Path inside the volume to mount instead of its root.")


class LocalObjectReference(WireModel):
    name: str = Field(..., min_length=1, description="Name of a Secret in the job's namespace.")


class PodOverrides(WireModel):
    """Merged onto the Ray pods the operator builds: maps are merged (yours win, except the operator's own
    kuberl.io/ray.io keys), lists appended, securityContext fields override the restricted defaults."""

    labels: dict[str, str] = Field(default_factory=dict, description="Extra pod labels.")
    annotations: dict[str, str] = Field(default_factory=dict, description="Extra pod annotations.")
    security_context: PodSecurityContext | None = Field(
        None,
        description=(
            "Pod securityContext, over the default (runAsNonRoot, RuntimeDefault seccomp: Pod Security "
            "'restricted')."
        ),
    )
    container_security_context: ContainerSecurityContext | None = Field(
        None,
        description=(
            "The Ray container's securityContext, over the default (no privilege escalation, all capabilities "
            "dropped)."
        ),
    )
    image_pull_secrets: list[LocalObjectReference] = Field(
        default_factory=list, description="Secrets for pulling the trainer image."
    )
    affinity: dict[str, Any] | None = Field(
        None, description="core/v1 Affinity (nodeAffinity, podAffinity, podAntiAffinity), kept as written."
    )
    topology_spread_constraints: list[dict[str, Any]] = Field(
        default_factory=list, description="core/v1 TopologySpreadConstraints, kept as written."
    )
    volumes: list[Volume] = Field(default_factory=list, description="Extra volumes (datasets, model caches).")
    volume_mounts: list[VolumeMount] = Field(
        default_factory=list, description="Mounts of those volumes in the Ray container."
    )
    env: list[EnvVar] = Field(
        default_factory=list, description="Extra environment variables of the Ray container."
    )
    scheduler_name: str | None = Field(None, description="Scheduler of the pods (e.g. volcano, yunikorn).")
    runtime_class_name: str | None = Field(None, description="RuntimeClass of the pods (e.g. nvidia).")

    @field_validator("labels")
    @classmethod
    def _labels(cls, v: dict[str, str]) -> dict[str, str]:
        return _check_labels(v, values=True)

    @field_validator("annotations")
    @classmethod
    def _annotations(cls, v: dict[str, str]) -> dict[str, str]:
        return _check_labels(v, values=False)


def check_job_labels(labels: dict[str, str], *, values: bool) -> dict[str, str]:
    """Labels/annotations for the RayJob (Kueue, Volcano, YuniKorn read them there)."""
    return _check_labels(labels, values=values)


def check_mounts(overrides: list[PodOverrides | None]) -> None:
    """Every volumeMount names a volume of the same pod (the operator's own or one listed here)."""
    volumes = set(RESERVED_VOLUMES) | {v.name for o in overrides if o for v in o.volumes}
    for o in overrides:
        for mount in o.volume_mounts if o else []:
            if mount.name not in volumes:
                raise ValueError(f"volumeMount {mount.name!r} names no volume of this pod")
