"""Cross-field rules of the RLTrainingJob spec: combinations of features that cannot work together.

Each section of the spec validates itself; this module says what no single section can see, e.g.
`output` with `multiAgent`, or the policy server on the metrics port. `RLTrainingJobSpec` calls
`check_combinations` after its fields are valid, so the local CLI and the operator refuse the same
documents with the same message. Every problem names the field (relative to `spec`) and the reason,
so a user who writes a combination gets either a working run or this error, never silence.

Pure pydantic and standard library: the operator imports this module too.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from pydantic_core import PydanticCustomError

from kuberl.spec.algorithms.base import AlgorithmConfigBase, supporting
from kuberl.spec.algorithms.offline import OfflineConfigBase
from kuberl.spec.common import learner_problems
from kuberl.spec.ports import (
    DEFAULT_METRICS_PORT,
    DEFAULT_POLICY_SERVER_PORT,
    RAY_HEAD_PORTS,
    metrics_port,
    policy_server_port,
    ray_metrics_port,
)

if TYPE_CHECKING:
    from kuberl.spec.job import RLTrainingJobSpec


Problem = tuple[str, str]
# The pydantic error type whose context lists (field, reason) pairs relative to the validated model.
COMBINATION_ERROR = "spec_combination"


def _multi_agent_problems(spec: RLTrainingJobSpec) -> list[Problem]:
    algo = spec.algorithm
    problems: list[Problem] = []
    # Algorithms whose training step draws its experience through `Algorithm.sample()`, so the
    # multi-agent runners can feed them unchanged (IMPALA, APPO and A3C drive their runners asynchronously).
    if spec.config.capabilities.joint_agents:
        problems.append(
            (
                "multiAgent",
                f"{algo} trains every agent of spec.env jointly (one learner and a mixing network), so "
                "multiAgent's per-policy setup does not apply; drop multiAgent",
            )
        )
    elif not spec.config.capabilities.multi_agent:
        problems.append(
            (
                "multiAgent",
                f"{algo} does not run multi-agent yet; use one of {', '.join(supporting('multi_agent'))}",
            )
        )
    for field, value in (("timesteps", spec.evaluation.timesteps), ("envConfig", spec.evaluation.env_config)):
        if value:
            problems.append(
                (
                    f"evaluation.{field}",
                    "multiAgent evaluation plays whole episodes (or self-play games) on the training env; "
                    "use evaluation.episodes",
                )
            )
    if spec.evaluation.parallel_to_training:
        problems.append(
            (
                "evaluation.parallelToTraining",
                "multiAgent evaluation runs in the driver between iterations, not in parallel",
            )
        )
    if spec.evaluation.num_env_runners:
        problems.append(
            (
                "evaluation.numEnvRunners",
                "multiAgent evaluation runs in the driver between iterations, not on evaluation actors; use 0",
            )
        )
    if spec.config.observation_filter != "NoFilter":
        problems.append(
            (
                "config.observationFilter",
                "must be NoFilter with multiAgent (filters are kept per single-agent runner)",
            )
        )
    if spec.config.normalize_rewards:
        problems.append(
            (
                "config.normalizeRewards",
                "not supported with multiAgent (the reward statistics are kept by the single-agent runners)",
            )
        )
    if getattr(spec.config.model, "use_lstm", False):
        # The multi-agent runner keeps no recurrent state per agent, and its per-policy batches are
        # agents' fragments laid end to end, not the fixed-length sequences a recurrent learner needs.
        problems.append(
            (
                "config.model.useLstm",
                "recurrent policies are not supported with multiAgent yet (the multi-agent runner keeps no "
                "LSTM state per agent); use a feed-forward model, or frameStack in envConfig",
            )
        )
    if spec.input_ is not None:
        problems.append(
            ("input", "offline training (BC, MARWIL, CQL) is single-agent; drop input or multiAgent")
        )
    if spec.external.enabled:
        problems.append(
            (
                "external.enabled",
                "the policy server serves single-agent simulators; a multiAgent job steps its PettingZoo env "
                "itself, so drop one of them",
            )
        )
    return problems


def _offline_problems(spec: RLTrainingJobSpec) -> list[Problem]:
    offline = isinstance(spec.config, OfflineConfigBase)
    problems: list[Problem] = []
    if offline and spec.input_ is None:
        problems.append(("input", f"{spec.algorithm} trains from recorded experience: set input.uris"))
    if not offline and spec.input_ is not None:
        problems.append(
            (
                "input",
                f"{spec.algorithm} learns from the env and never reads recorded experience; input is for "
                "BC, MARWIL and CQL",
            )
        )
    if offline and spec.output is not None:
        problems.append(
            ("output", f"{spec.algorithm} never samples the env, so there is nothing to record; drop output")
        )
    if offline and spec.external.enabled:
        problems.append(
            ("external.enabled", f"{spec.algorithm} trains from recorded experience, not from simulators")
        )
    if spec.output is not None and spec.config.normalize_rewards:
        # The recorded rewards would be scaled by statistics of this run that the reader never sees.
        problems.append(
            (
                "config.normalizeRewards",
                "output records raw experience for offline algorithms; drop normalizeRewards or output",
            )
        )
    # ES and ARS (capabilities.offline_output False) play whole episodes of perturbed policies in lockstep and
    # keep returns only: there are no transitions to write.
    if spec.output is not None and not spec.config.capabilities.offline_output:
        problems.append(
            (
                "output",
                f"{spec.algorithm} evaluates perturbed policies and keeps only their returns, so there are no "
                "transitions to record; drop output",
            )
        )
    return problems


def capability_problems(config: AlgorithmConfigBase, algorithm: str) -> list[Problem]:
    """The config-level features `config.capabilities` (kuberl.spec.capabilities) leave out, that no other
    rule covers, with fields relative to `spec`. One function for validation and the trainer
    (kuberl.algorithms.base.Algorithm.check_experience_features), so a built-in and a custom `module:Class`
    algorithm are refused with the same field and words; `algorithm` is spec.algorithm as written."""
    problems: list[Problem] = []
    if config.observation_filter != "NoFilter" and not config.capabilities.observation_filter:
        able = ", ".join(supporting("observation_filter"))
        problems.append(
            (
                "config.observationFilter",
                f"{algorithm} keeps no observation filter (replayed observations would stay normalised with "
                f"the statistics of when they were sampled, which keep drifting); use NoFilter, or {able}",
            )
        )
    if config.normalize_rewards and not config.capabilities.reward_normalization:
        able = ", ".join(supporting("reward_normalization"))
        problems.append(
            (
                "config.normalizeRewards",
                f"{algorithm} does not learn from the env runners' rewards as they are sampled (offline "
                f"data, replay, whole-episode returns or asynchronous runners); normalizeRewards is for {able}",
            )
        )
    return problems


def _external_problems(spec: RLTrainingJobSpec) -> list[Problem]:
    """The policy server samples synchronously with the feed-forward actor-critic runner policy, on raw
    observations (docs/external.md)."""
    if not spec.external.enabled or spec.multi_agent is not None:  # multiAgent's own problem says why
        return []
    caps = spec.config.capabilities
    reasons = []
    if not caps.external and not caps.offline_input:  # offline ones: _offline_problems says why
        reasons.append(f"external simulators train {', '.join(supporting('external'))}, not {spec.algorithm}")
    if spec.config.observation_filter != "NoFilter":
        reasons.append("observationFilter MeanStdFilter is not supported with external simulators")
    if spec.config.normalize_rewards:
        reasons.append("normalizeRewards is not supported with external simulators")
    if spec.config.model.use_lstm:
        reasons.append("recurrent models (use_lstm) are not supported with external simulators yet")
    return [("external.enabled", "; ".join(reasons))] if reasons else []


def _port_problems(spec: RLTrainingJobSpec) -> list[Problem]:
    """Ports the trainer opens on the head host must differ. Port 0 means "any free port" locally but a
    fixed default on Kubernetes, and the same document runs both ways, so the defaults are compared."""
    metrics = metrics_port(spec.metrics.port) if spec.metrics.enabled else None
    external = policy_server_port(spec.external.port) if spec.external.enabled else None
    problems: list[Problem] = []
    for field, port in (("metrics.port", metrics), ("external.port", external)):
        if port in RAY_HEAD_PORTS:
            problems.append(
                (field, f"{port} is taken by {RAY_HEAD_PORTS[port]} on the Ray head; pick another")
            )
    if metrics is not None and external is not None:
        if metrics == external:
            problems.append(
                (
                    "external.port",
                    f"{external} is also metrics.port (0 means {DEFAULT_METRICS_PORT} for metrics and "
                    f"{DEFAULT_POLICY_SERVER_PORT} for the policy server on Kubernetes); the policy server "
                    "and /metrics need different ports",
                )
            )
        ray_metrics = ray_metrics_port(metrics)
        if external == ray_metrics:
            problems.append(
                (
                    "external.port",
                    f"{external} is taken by Ray's metrics exporter on the head when metrics.port is {metrics}; "
                    "pick another",
                )
            )
    return problems


def _evaluation_runner_problems(spec: RLTrainingJobSpec) -> list[Problem]:
    """Evaluation actors (evaluation.numEnvRunners) are Ray actors beside the env runners: they need the
    job to run on Ray, and a Ray cluster sized for them."""
    n = spec.evaluation.num_env_runners
    if not n:
        return []
    field = "evaluation.numEnvRunners"
    res = spec.resources
    if spec.external.enabled:
        return [(field, "external simulators bring their own envs and no Ray env runners; use 0")]
    if spec.config.capabilities.joint_agents:
        return [(field, f"{spec.algorithm} evaluates its agents jointly on one env in the driver; use 0")]
    if res.env_runners == 0:
        return [
            (
                field,
                f"{n} evaluation actors need Ray, but envRunners: 0 runs without it; set envRunners ≥ 1 or use 0",
            )
        ]
    if res.local_mode == "driver":
        return [
            (
                field,
                f"{n} evaluation actors need Ray, but localMode: driver runs without it; use localMode auto or actors, or 0",
            )
        ]
    if spec.tune is not None:
        return [
            (
                field,
                "a Tune trial's placement group holds its env runners only; evaluate in the trial's driver (0)",
            )
        ]
    return []  # fmt: skip


def combination_problems(spec: RLTrainingJobSpec) -> list[Problem]:
    """Every (field path relative to `spec`, reason) that makes this combination of features invalid."""
    problems = (
        _offline_problems(spec)
        + _external_problems(spec)
        + capability_problems(spec.config, spec.algorithm)
        + _port_problems(spec)
        + _evaluation_runner_problems(spec)
    )
    problems += learner_problems(
        spec.resources,
        spec.config,
        multi_agent=spec.multi_agent is not None,
        learner_pods_sized=spec.cluster.learners is not None,
    )
    if spec.multi_agent is not None:
        problems = _multi_agent_problems(spec) + problems
    # One problem per field: the first reason is the one to fix first.
    first: dict[str, str] = {}
    for field, reason in problems:
        first.setdefault(field, reason)
    return list(first.items())


def check_combinations(spec: RLTrainingJobSpec) -> None:
    """Raise every problem at once as one pydantic error; its context carries the (field, reason) pairs,
    which kuberl.spec.errors turns into one SpecError problem per field path."""
    problems = combination_problems(spec)
    if problems:
        message = "; ".join(f"{field}: {reason}" for field, reason in problems)
        raise PydanticCustomError(
            COMBINATION_ERROR, "{message}", {"message": message, "problems": [list(p) for p in problems]}
        )
