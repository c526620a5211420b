"""Spec sections shared by every algorithm: stop criteria, resources, checkpoints, metrics, evaluation."""

from __future__ import annotations

import re
from typing import Annotated, Any, Literal

from pydantic import Field, ValidationInfo, field_validator, model_validator
from pydantic.alias_generators import to_camel

from kuberl.spec.base import WireModel

PositiveInt = Annotated[int, Field(ge=1)]
# The custom Ray resource of the learner pods the operator builds for resources.learners > 1
# (kuberl_operator.builders.learner_group); the data-parallel learner actors ask for one each.
LEARNER_RESOURCE = "kuberl_learner"


class StopSpec(WireModel):
    """When training ends. The first criterion reached stops the run; with none set, it runs until killed."""

    episode_return_mean: float | None = Field(
        None, description="Stop once the mean return of the last 100 episodes reaches this value."
    )
    timesteps: PositiveInt | None = Field(None, description="Stop after this many environment steps.")
    iterations: PositiveInt | None = Field(None, description="Stop after this many training iterations.")
    time_seconds: Annotated[float, Field(gt=0)] | None = Field(
        None, description="Stop after this much wall-clock training time (seconds)."
    )
    # RLlib's old result name, kept so RLlib stop criteria paste in (docs/rllib.md). A field of its own
    # (not only an alias) so the CRD lists it and `kubectl apply` keeps it; always moved into
    # episodeReturnMean before validation, so it is never set on a parsed spec.
    episode_reward_mean: float | None = Field(
        None, description="The old (RLlib) name of episodeReturnMean; give one of the two."
    )

    @model_validator(mode="before")
    @classmethod
    def _old_name(cls, data: Any) -> Any:
        if not isinstance(data, dict):
            return data
        old = [k for k in ("episodeRewardMean", "episode_reward_mean") if k in data]
        if not old:
            return data
        new = [k for k in ("episodeReturnMean", "episode_return_mean") if k in data]
        if new or len(old) > 1:
            raise ValueError(
                f"{' and '.join(old + new)} name the same criterion (episodeRewardMean is RLlib's old name "
                "of episodeReturnMean): give one"
            )
        rest = {k: v for k, v in data.items() if k != old[0]}
        return {**rest, "episodeReturnMean": data[old[0]]}

    def is_empty(self) -> bool:
        return all(
            v is None for v in (self.episode_return_mean, self.timesteps, self.iterations, self.time_seconds)
        )


class ResourcesSpec(WireModel):
    """How the run is spread over Ray. The same numbers size the Ray cluster on Kubernetes."""

    env_runners: int = Field(
        2,
        ge=0,
        description=(
            "Number of EnvRunner actors sampling in parallel. 0 samples in the driver process and does "
            "not start Ray at all (fastest start, easiest debugging)."
        ),
    )
    envs_per_runner: int = Field(
        8,
        ge=1,
        le=4096,  # each is a live simulator in one process; 10**6 hung building them
        description="Sub-environments in each runner's vector env; inference is batched across them.",
    )
    cpus_per_runner: Annotated[float, Field(gt=0)] = Field(
        1.0, description="CPUs reserved per EnvRunner actor."
    )
    learners: PositiveInt = Field(
        1,
        description=(
            "Learner processes. 1: the learner runs in the driver (on the Ray head on Kubernetes). More: that "
            "many data-parallel learner actors (torch DDP; gloo on CPU, nccl on GPUs), each training on an equal "
            "shard of every batch, for the algorithms that support it (PPO, A2C, PG); on Kubernetes with "
            "gpusPerLearner > 0 they run in a `learners` worker group with one pod per learner."
        ),
    )
    gpus_per_learner: Annotated[float, Field(ge=0)] = Field(
        0.0, description="GPUs per learner. 0 trains on CPU; more than 0 requires CUDA."
    )
    cpus_per_learner: Annotated[float, Field(gt=0)] = Field(1.0, description="CPUs reserved per learner.")
    local_mode: Literal["auto", "driver", "actors"] = Field(
        "auto",
        description=(
            "Where the env runner samples when the job runs locally (`kuberl run` outside Kubernetes, no "
            "RAY_ADDRESS); on a Ray cluster the envRunners actors always run. auto: in the driver process "
            "when envRunners is 1 and learners is 1 (no Ray to start: the fastest start), else as actors. "
            "driver: in the driver (envRunners must be 0 or 1). actors: envRunners Ray actors on an "
            "embedded Ray."
        ),
    )

    @field_validator("local_mode")
    @classmethod
    def _driver_takes_one_runner(cls, mode: str, info: ValidationInfo) -> str:
        runners = info.data.get("env_runners")
        if mode == "driver" and runners is not None and runners > 1:
            raise ValueError(
                f"driver samples with one env runner in the driver process, but envRunners is {runners}; "
                "use envRunners: 1, or localMode: auto or actors"
            )
        return mode


def learner_problems(
    resources: ResourcesSpec, config: Any, *, multi_agent: bool, learner_pods_sized: bool = False
) -> list[tuple[str, str]]:
    """(field relative to `spec`, reason) for each way `resources.learners` cannot work with this job: the
    algorithm's learner must split its batch over data-parallel ranks (`capabilities.multi_learner` on
    its config class), and each rank takes an equal part of a minibatch. `learner_pods_sized`: whether
    `cluster.learners` (the learner pods' size on Kubernetes) is set, which only learners > 1 use."""
    n = resources.learners
    if n == 1:
        if learner_pods_sized:
            return [
                (
                    "cluster.learners",
                    "sizes the pods of data-parallel learners, but resources.learners is 1: the learner trains "
                    "in the driver on the head pod (size it with cluster.head), so this would be ignored; "
                    "remove it or set resources.learners > 1",
                )
            ]
        return []
    name = getattr(config, "algorithm", type(config).__name__)
    capabilities = getattr(config, "capabilities", None)
    if capabilities is None or not capabilities.multi_learner:
        # A config may say why itself (ES and ARS have no gradient learner at all).
        why = getattr(config, "single_learner_reason", None) or (
            "does not support data-parallel learners yet (its learner is not sharded: off-policy "
            "replay, asynchronous and offline learners train in one process)"
        )
        from kuberl.spec.algorithms.base import supporting

        able = supporting("multi_learner")
        return [
            ("resources.learners", f"{name} {why}; use learners: 1, or {', '.join(able[:-1])} or {able[-1]}")
        ]
    if multi_agent:
        return [
            ("resources.learners", "multiAgent trains one learner per policy in the driver; use learners: 1")
        ]
    if 0 < resources.gpus_per_learner < 1:
        return [
            (
                "resources.gpusPerLearner",
                f"{resources.gpus_per_learner:g} with {n} learners: NCCL cannot put two DDP ranks on one GPU, so "
                "each data-parallel learner needs whole GPUs (gpusPerLearner >= 1)",
            )
        ]
    # The batch each gradient step splits over the ranks: a minibatch (the policy-gradient family), or
    # what the config names in `sharded_batch` (DQN: train_batch_size, one replayed minibatch per step).
    batch_field: str = getattr(config, "sharded_batch", "minibatch_size")
    minibatch = getattr(config, batch_field, None)
    model: Any = getattr(config, "model", None)
    if minibatch is not None and getattr(model, "use_lstm", False):
        # A recurrent minibatch is whole sequences of maxSeqLen steps (shorter only when a rollout is),
        # and the ranks split it by sequence.
        sequences = minibatch // model.max_seq_len
        if sequences < n or sequences % n:
            return [
                (
                    "config.minibatchSize",
                    f"{minibatch} holds {sequences} sequences of model.maxSeqLen {model.max_seq_len} steps "
                    f"(recurrent minibatches are whole sequences), not a positive multiple of resources.learners ({n}): "
                    "each learner takes an equal number of sequences of every minibatch",
                )
            ]
    elif minibatch is not None and minibatch % n:
        return [
            (
                f"config.{to_camel(batch_field)}",
                f"{minibatch} is not a multiple of resources.learners ({n}): each learner takes an equal part "
                "of every minibatch",
            )
        ]
    return []


class SecretRef(WireModel):
    """A Kubernetes Secret holding S3 credentials, exposed to the trainer as environment variables."""

    secret_name: str = Field(..., min_length=1, description="Name of the Secret in the job's namespace.")
    access_key_id_key: str = Field(
        "AWS_ACCESS_KEY_ID", description="Key in the Secret holding the access key id."
    )
    secret_access_key_key: str = Field(
        "AWS_SECRET_ACCESS_KEY", description="Key in the Secret holding the secret access key."
    )
    endpoint_url_key: str | None = Field(
        None, description="Optional key holding the S3 endpoint URL (S3-compatible stores such as MinIO)."
    )
    region_key: str | None = Field(None, description="Optional key holding the region.")


class CheckpointSpec(WireModel):
    """Where and how often checkpoints are written."""

    uri: str | None = Field(
        None,
        description=(
            "Checkpoint location: s3://bucket/prefix or a local directory. Default: <runDir>/checkpoints "
            "locally. Required on Kubernetes for retries and suspend to resume."
        ),
    )
    every_iterations: int = Field(10, ge=0, description="Checkpoint every N iterations (0: only at the end).")
    keep: PositiveInt = Field(3, description="Complete checkpoints kept; older ones are deleted.")
    at_end: bool = Field(
        True, description="Write a checkpoint when training stops (also on Ctrl-C / SIGTERM)."
    )
    credentials: SecretRef | None = Field(
        None,
        description="Kubernetes Secret with S3 credentials (ignored by `kuberl run`, which uses the AWS chain).",
    )

    @field_validator("uri")
    @classmethod
    def _scheme(cls, v: str | None) -> str | None:
        if v is None:
            return v
        if "://" in v and not v.startswith(("s3://", "file://")):
            raise ValueError(
                f"unsupported scheme in {v!r}: use s3://bucket/prefix, file:///path or a plain path"
            )
        if v.startswith("s3://") and not re.match(r"^s3://[a-z0-9][a-z0-9.\-]{1,61}[a-z0-9](/.*)?$", v):
            raise ValueError(
                f"{v!r} is not a valid S3 URI: expected s3://bucket[/prefix] with a DNS-style bucket"
            )
        return v


class MetricsSpec(WireModel):
    """The trainer's HTTP endpoint: Prometheus `/metrics` and the JSON `/status` the operator reads."""

    enabled: bool = Field(True, description="Serve /metrics and /status.")
    port: int = Field(
        8080, ge=0, le=65535, description="Port for /metrics and /status (0 picks a free port)."
    )
    custom_metrics_in_status: bool = Field(
        False,
        description=(
            "Mirror the trainer's custom metrics (config.callbacks; /status's names, at most 32 of them) into "
            "status.customMetrics as name → {mean, min, max}."
        ),
    )
    max_custom_metrics: int = Field(
        32,
        ge=0,
        le=1000,
        description=(
            "Custom metric names (config.callbacks) exported to /metrics and /status at a time, first come "
            "first served; names beyond are left out with one warning (result.json and TensorBoard keep every "
            "one). Bounds kuberl_custom_metric's series when names vary."
        ),
    )
    custom_metric_expiry_iterations: int = Field(
        10,
        ge=1,
        description=(
            "A custom metric name missing from this many consecutive iterations that report custom metrics is "
            "removed from /metrics and /status, freeing its place for a new name."
        ),
    )


class EvaluationSpec(WireModel):
    """Periodic evaluation on separate environments, with the greedy (or sampling) policy."""

    interval: int = Field(0, ge=0, description="Evaluate every N iterations (0: never during training).")
    episodes: PositiveInt = Field(10, description="Episodes per evaluation.")
    explore: bool = Field(
        False, description="Sample actions (True) or act greedily (False) during evaluation."
    )
    timesteps: PositiveInt | None = Field(
        None,
        description=(
            "Evaluate for this many env steps instead of a number of episodes (RLlib's "
            "evaluation_duration_unit: timesteps); statistics cover the episodes completed within them."
        ),
    )
    env_config: dict[str, Any] = Field(
        default_factory=dict,
        description="Overrides of spec.envConfig for the evaluation environments (RLlib's evaluation_config.env_config).",
    )
    parallel_to_training: bool = Field(
        False,
        description=(
            "Evaluate while the next iterations train (RLlib's evaluation_parallel_to_training): on the "
            "numEnvRunners evaluation actors, or with 0 on a thread of the trainer, with the weights of the "
            "iteration that started it; the statistics appear in the result of the iteration that finds the "
            "evaluation finished, with weights_iteration naming the iteration whose weights it used."
        ),
    )
    num_env_runners: int = Field(
        0,
        ge=0,
        description=(
            "Evaluation actors (RLlib's evaluation_num_env_runners): Ray actors of their own, started once, "
            "sent the current weights at each evaluation, each playing its share of the episodes (or "
            "timesteps). cpusPerRunner CPUs each, counted in the Ray cluster the operator builds. 0: "
            "evaluate in the driver (on a thread with parallelToTraining). Needs envRunners ≥ 1."
        ),
    )


ResumeMode = Literal["auto", "never"]


def validate_resume(v: str) -> str:
    if v in ("auto", "never"):
        return v
    if v.startswith(("s3://", "file://", "/", "./", "../")) or "/" in v:
        return v
    raise ValueError(f"{v!r} is not 'auto', 'never' or a checkpoint URI (s3://… or a path)")
