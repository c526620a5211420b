"""The RLTrainingJob document (kuberl.io/v1alpha1): metadata, spec and status.

The same document runs locally (`kuberl run`) and on Kubernetes (`kubectl apply`). Fields under
`cluster`, `suspend`, `backoffLimit`, `activeDeadlineSeconds` and `ttlSecondsAfterFinished` only
matter to the operator.
"""

from __future__ import annotations

import re
from typing import Any, Literal

from pydantic import (
    AliasChoices,
    BaseModel,
    Field,
    FieldSerializationInfo,
    SerializerFunctionWrapHandler,
    ValidationInfo,
    ValidatorFunctionWrapHandler,
    field_serializer,
    field_validator,
    model_validator,
)
from pydantic_core import PydanticCustomError

from kuberl.spec.algorithms import ALGORITHMS, CONFIG_MODELS, AlgorithmConfig, AlgorithmConfigBase
from kuberl.spec.base import LenientModel, WireModel
from kuberl.spec.cluster import ClusterSpec
from kuberl.spec.combinations import COMBINATION_ERROR, check_combinations
from kuberl.spec.common import (
    CheckpointSpec,
    EvaluationSpec,
    MetricsSpec,
    ResourcesSpec,
    StopSpec,
    validate_resume,
)
from kuberl.spec.custom import DeferredConfig, config_model, importing, is_custom, validate_config
from kuberl.spec.external import ExternalSpec
from kuberl.spec.multi_agent import MultiAgentSpec
from kuberl.spec.offline import InputSpec, OutputSpec
from kuberl.spec.tune import TuneSpec, tune_problems

GROUP = "kuberl.io"
VERSION = "v1alpha1"
API_VERSION = f"{GROUP}/{VERSION}"
KIND = "RLTrainingJob"
PLURAL = "rltrainingjobs"
SINGULAR = "rltrainingjob"
SHORT_NAMES = ("rlj",)
CATEGORIES = ("kuberl", "all")

# Names become RayJob, RayCluster, Service and label values; KubeRay appends suffixes to the RayJob
# name for its RayCluster and pods, so stay well under the 63-character label limit.
MAX_NAME_LENGTH = 40
MAX_NAMESPACE_LENGTH = 63
_DNS_LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")
# A Gymnasium id ("CartPole-v1", "ALE/Pong-v5"), a PettingZoo env ("pettingzoo.mpe:simple_spread_v3"),
# or an import path "module.sub:factory".
_ENV_ID = re.compile(r"^(?:[\w.\-]+/)?[A-Za-z_][\w.\-]*$|^[A-Za-z_][\w.]*:[A-Za-z_]\w*$")

Phase = Literal["Pending", "Running", "Succeeded", "Failed", "Suspended"]
PHASES: tuple[str, ...] = ("Pending", "Running", "Succeeded", "Failed", "Suspended")


class ObjectMeta(LenientModel):
    """The part of metav1.ObjectMeta kuberl reads; everything else Kubernetes adds is kept as is."""

    name: str = Field(..., description="Job name: a DNS label of at most 40 characters.")
    namespace: str | None = Field(None, description="Namespace (default: the current one).")
    labels: dict[str, str] = Field(default_factory=dict)
    annotations: dict[str, str] = Field(default_factory=dict)

    @field_validator("name")
    @classmethod
    def _dns_label(cls, v: str) -> str:
        if len(v) > MAX_NAME_LENGTH:
            raise ValueError(
                f"{v!r} is {len(v)} characters; at most {MAX_NAME_LENGTH} (it prefixes RayJob and pod names)"
            )
        if not _DNS_LABEL.match(v):
            raise ValueError(
                f"{v!r} is not a DNS label: lowercase letters, digits and '-', starting and ending alphanumeric"
            )
        return v

    @field_validator("namespace")
    @classmethod
    def _namespace(cls, v: str | None) -> str | None:
        # A namespace is a DNS label (RFC 1123) of at most 63 characters; it is written into manifests.
        if v is None:
            return v
        if len(v) > MAX_NAMESPACE_LENGTH:
            raise ValueError(f"a namespace has at most {MAX_NAMESPACE_LENGTH} characters, not {len(v)}")
        if not _DNS_LABEL.match(v):
            raise ValueError(
                f"{v!r} is not a namespace name: lowercase letters, digits and '-', starting and ending "
                "alphanumeric"
            )
        return v


MAX_ALGORITHM_LENGTH = 256


class RLTrainingJobSpec(WireModel):
    """What to train, for how long, on what resources, and where its checkpoints live."""

    algorithm: str = Field(
        ...,
        # A bound on the name keeps the CRD's CEL rules within the API server's cost budget (they
        # upper-case it per config key); module paths are far shorter.
        max_length=MAX_ALGORITHM_LENGTH,
        description=(
            f"The algorithm: one of {', '.join(ALGORITHMS)}; or `module:Class`, a custom Algorithm subclass "
            "whose config model is its `config_class` (docs/custom-algorithms.md)."
        ),
    )
    env: str = Field(
        ...,
        description=(
            "Environment: a Gymnasium id (CartPole-v1), or `module:factory` called with envConfig inside each "
            "runner (so the env is never pickled)."
        ),
    )
    env_config: dict[str, Any] = Field(
        default_factory=dict, description="Keyword arguments for the env factory / gymnasium.make."
    )
    config: AlgorithmConfig = Field(
        default=None,  # filled from `algorithm` by _inject_discriminator
        description="The algorithm's hyperparameters, validated against that algorithm's own model.",
    )
    seed: int | None = Field(
        0,
        ge=0,
        le=2**32 - 1,  # NumPy's seed range; torch's generators overflow on larger ones
        description="Base random seed; each runner and sub-env derives its own.",
    )
    stop: StopSpec = Field(
        default_factory=StopSpec, description="Stop criteria; the first one reached ends training."
    )
    resources: ResourcesSpec = Field(
        default_factory=ResourcesSpec, description="Runners, learners, CPUs and GPUs."
    )
    checkpoint: CheckpointSpec = Field(
        default_factory=CheckpointSpec, description="Checkpoint location and policy."
    )
    resume: str = Field(
        "auto",
        description=(
            "auto: continue from the newest complete checkpoint if there is one; never: start fresh; or the URI "
            "of a checkpoint to start from."
        ),
    )
    metrics: MetricsSpec = Field(
        default_factory=MetricsSpec, description="Prometheus /metrics and JSON /status."
    )
    evaluation: EvaluationSpec = Field(default_factory=EvaluationSpec, description="Periodic evaluation.")
    multi_agent: MultiAgentSpec | None = Field(
        None, description="Multi-agent training on a PettingZoo env: policies, agent mapping, self-play."
    )
    output: OutputSpec | None = Field(
        None, description="Record sampled experience as Parquet for offline RL (docs/offline.md)."
    )
    input_: InputSpec | None = Field(
        None,
        alias="input",
        validation_alias=AliasChoices("input", "input_"),
        description="Recorded experience the offline algorithms (BC, MARWIL, CQL) train on.",
    )
    external: ExternalSpec = Field(
        default_factory=ExternalSpec, description="Policy server for external simulators (docs/external.md)."
    )
    tune: TuneSpec | None = Field(
        None, description="Run a Ray Tune sweep or PBT over this spec's hyperparameters (docs/tune.md)."
    )
    run_dir: str | None = Field(
        None,
        description="Local run directory (default ./runs/<name>); on Kubernetes a path inside the head pod.",
    )
    # Kubernetes-only.
    cluster: ClusterSpec = Field(
        default_factory=ClusterSpec, description="Ray cluster placement (Kubernetes only)."
    )
    suspend: bool = Field(
        False, description="Stop the Ray cluster, keeping checkpoints; false again resumes."
    )
    backoff_limit: int = Field(3, ge=0, description="Failed RayJobs are retried this many times, resuming.")
    active_deadline_seconds: int | None = Field(
        None,
        ge=1,
        description=(
            "Fail the whole job (all attempts together, counted from status.startTime) after this many "
            "seconds; a job past its deadline is not retried."
        ),
    )
    ttl_seconds_after_finished: int = Field(
        0,
        ge=0,
        description=(
            "Seconds KubeRay keeps a finished or failed attempt's Ray cluster (its pods and GPUs) before "
            "deleting it; 0 frees them at once, as KubeRay's own default. The RayJob object, its "
            "submitter's logs and the checkpoints stay."
        ),
    )

    @model_validator(mode="before")
    @classmethod
    def _inject_discriminator(cls, data: Any) -> Any:
        if not isinstance(data, dict):
            return data
        algorithm = data.get("algorithm")
        if is_custom(algorithm):
            # Its own config model validates `config` (_custom_config); no discriminator to inject. One
            # that cannot be imported is reported on `algorithm` alone (_known_algorithm).
            if importing() and not _importable(algorithm):
                return {k: v for k, v in data.items() if k != "config"}
            return {**data, "config": data.get("config") or {}}
        if isinstance(algorithm, str) and algorithm not in ALGORITHMS:
            upper = {a.upper(): a for a in ALGORITHMS}
            if algorithm.upper() not in upper:
                # Leave `config` out so the only error is the one on `algorithm` (_known_algorithm).
                return {k: v for k, v in data.items() if k != "config"}
            algorithm = upper[algorithm.upper()]  # "ppo" → "PPO", as RLlib's registry accepts
        config = data.get("config")
        if config is None:
            config = {}
        if isinstance(config, dict) and isinstance(algorithm, str):
            config = {**config, "algorithm": algorithm}
        return {**data, "algorithm": algorithm, "config": config}

    @field_validator("algorithm")
    @classmethod
    def _known_algorithm(cls, v: str) -> str:
        if is_custom(v):
            if importing():
                config_model(v)  # raises ValueError saying why the class cannot be used
            return v
        if v not in ALGORITHMS:
            raise ValueError(
                f"unknown algorithm {v!r}; choose one of {', '.join(ALGORITHMS)}, or a custom Algorithm "
                "as module:Class"
            )
        return v

    @field_validator("config", mode="wrap")
    @classmethod
    def _custom_config(cls, value: Any, handler: ValidatorFunctionWrapHandler, info: ValidationInfo) -> Any:
        algorithm = info.data.get("algorithm")
        if is_custom(algorithm):
            return validate_config(algorithm, value)
        return handler(value)

    @field_serializer("config", mode="wrap")
    def _config_as_is(
        self, value: Any, handler: SerializerFunctionWrapHandler, info: FieldSerializationInfo
    ) -> Any:
        # The union serialises a member by the built-in model its tag names, which would drop a custom
        # model's own fields (EntropyTargetPPOConfig's are not PPOConfig's) from job.json and the ConfigMap.
        if isinstance(value, BaseModel) and type(value) not in _BUILTIN_CONFIGS:
            return value.model_dump(
                mode=info.mode,
                by_alias=info.by_alias,
                exclude_unset=info.exclude_unset,
                exclude_defaults=info.exclude_defaults,
                exclude_none=info.exclude_none,
                round_trip=info.round_trip,
            )
        return handler(value)

    @field_validator("env")
    @classmethod
    def _env_id(cls, v: str) -> str:
        if not _ENV_ID.match(v):
            raise ValueError(
                f"{v!r} is neither a Gymnasium id like 'CartPole-v1' nor an import path like 'my_pkg.envs:make_env'"
            )
        return v

    @field_validator("resume")
    @classmethod
    def _resume(cls, v: str) -> str:
        return validate_resume(v)

    @model_validator(mode="after")
    def _combinations(self) -> RLTrainingJobSpec:
        if isinstance(self.config, DeferredConfig):
            return self  # a custom algorithm the operator cannot import: the trainer checks its rules
        check_combinations(self)  # cross-field rules: kuberl.spec.combinations
        return self

    @model_validator(mode="after")
    def _tune(self) -> RLTrainingJobSpec:
        if isinstance(self.config, DeferredConfig):
            return self
        problems = tune_problems(self)  # each trial's values applied to this spec: kuberl.spec.tune
        if problems:
            message = "; ".join(f"{field}: {reason}" for field, reason in problems)
            raise PydanticCustomError(
                COMBINATION_ERROR, "{message}", {"message": message, "problems": [list(p) for p in problems]}
            )
        return self

    @property
    def algo_config(self) -> AlgorithmConfigBase:
        return self.config


_BUILTIN_CONFIGS = frozenset(CONFIG_MODELS.values())


def _importable(path: str) -> bool:
    try:
        config_model(path)
    except ValueError:
        return False
    return True


class Condition(LenientModel):
    """metav1.Condition."""

    type: str
    status: Literal["True", "False", "Unknown"]
    reason: str = Field(..., pattern=r"^[A-Za-z]([A-Za-z0-9_,:]*[A-Za-z0-9_])?$")
    message: str = ""
    last_transition_time: str | None = None
    observed_generation: int | None = None


class CustomMetricStats(LenientModel):
    """One custom metric over the episodes of the trainer's last iteration that recorded it."""

    mean: float | None = Field(None, description="Mean over those episodes.")
    min: float | None = Field(None, description="Smallest value.")
    max: float | None = Field(None, description="Largest value.")


class RLTrainingJobStatus(LenientModel):
    """What the operator observed. Written by the operator only."""

    phase: Phase | None = Field(None, description="Pending, Running, Succeeded, Failed or Suspended.")
    conditions: list[Condition] = Field(default_factory=list, description="metav1.Condition list.")
    observed_generation: int | None = Field(None, description="The spec generation this status describes.")
    ray_job_name: str | None = Field(None, description="The current RayJob (saved before it is created).")
    config_map_name: str | None = Field(None, description="The ConfigMap holding the job spec.")
    attempt: int = Field(0, ge=0, description="Retries so far (0 on the first attempt).")
    iteration: int | None = Field(None, description="Training iterations completed.")
    timesteps: int | None = Field(None, description="Environment steps sampled.")
    episode_return_mean: float | None = Field(None, description="Mean return of the last 100 episodes.")
    last_checkpoint: str | None = Field(None, description="URI of the newest complete checkpoint.")
    custom_metrics: dict[str, CustomMetricStats] | None = Field(
        None,
        description="spec.metrics.customMetricsInStatus: the trainer's custom metrics (at most 32 names).",
    )
    start_time: str | None = Field(None, description="When the first RayJob was created (RFC 3339).")
    completion_time: str | None = Field(None, description="When the job succeeded or failed (RFC 3339).")
    message: str | None = Field(None, description="Human-readable summary of the current phase.")


class RLTrainingJob(WireModel):
    """The whole custom resource."""

    api_version: Literal["kuberl.io/v1alpha1"] = Field("kuberl.io/v1alpha1", description="kuberl.io/v1alpha1")
    kind: Literal["RLTrainingJob"] = Field("RLTrainingJob", description="RLTrainingJob")
    metadata: ObjectMeta
    spec: RLTrainingJobSpec
    status: RLTrainingJobStatus | None = None
