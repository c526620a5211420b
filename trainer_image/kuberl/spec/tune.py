"""`spec.tune`: hyperparameter sweeps and Population Based Training with Ray Tune (docs/tune.md).

A sweep is the job itself plus a search space: each trial is the same spec with some fields replaced,
named by the paths `--set` takes (`config.lr`, `config.model.fcnetHiddens`, `envConfig.size`). Domains
are written the way Tune names them, one key each (`{gridSearch: [...]}`, `{loguniform: [1e-4, 1e-2]}`),
so the CRD can express them and RLlib users recognise them.

Every value a trial could get is checked here, before anything runs: grid and choice values, and the
ends of numeric ranges, are applied to the spec and validated with it, so a bad value is reported as
`spec.tune.paramSpace.config.lr: …` by `kuberl run` and by the operator alike.

Pure pydantic: the operator imports this module too.
"""

from __future__ import annotations

import copy
import json
import re
from collections.abc import Iterator, Mapping
from typing import TYPE_CHECKING, Any, Literal

from pydantic import Field, model_validator
from pydantic.json_schema import JsonDict

from kuberl.spec.base import WireModel
from kuberl.spec.common import ResourcesSpec

if TYPE_CHECKING:
    from kuberl.spec.job import RLTrainingJobSpec

Problem = tuple[str, str]

# Lists of values of any type: structural CRD schemas need a type on every array item, except for
# nodes that keep unknown fields, which is how a free JSON value is said.
_ANY_ITEMS: JsonDict = {"items": {"x-kubernetes-preserve-unknown-fields": True}}
_RANGE: JsonDict = {"minItems": 2, "maxItems": 2}

# Result keys a trial reports (kuberl.algorithms.base.Algorithm._result, flattened with "/").
KNOWN_METRICS = (
    "episode_return_mean",
    "episode_return_min",
    "episode_return_max",
    "episode_len_mean",
    "timesteps_total",
    "episodes_total",
    "training_iteration",
    "time_total_s",
    "env_steps_per_s",
    "evaluation/episode_return_mean",
    "evaluation/episode_return_min",
    "evaluation/episode_return_max",
    "evaluation/episode_len_mean",
)
# Free-form learner statistics, e.g. learner/default_policy/total_loss.
METRIC_PREFIXES = ("learner/", "timers/")

# Fields a trial may not vary, and why: they size the trial's Ray resources, name where the experiment
# lives, or are the experiment itself.
_FIXED_PATHS: dict[str, str] = {
    "algorithm": "a sweep runs one algorithm (its config model decides which fields exist)",
    "tune": "the experiment cannot tune itself",
    "resources": "every trial gets the same Ray resources (the Ray cluster is sized for them)",
    "runDir": "trials get their own run directories under the job's",
    "checkpoint": "Ray Tune keeps every trial's checkpoints under the experiment",
    "resume": "the experiment resumes as a whole",
    "metrics": "trials export no metrics of their own; the experiment does",
    "cluster": "Kubernetes placement is the experiment's, not a trial's",
    "suspend": "Kubernetes-only",
    "backoffLimit": "Kubernetes-only",
    "activeDeadlineSeconds": "Kubernetes-only",
    "ttlSecondsAfterFinished": "Kubernetes-only",
    "external": "trials cannot share one policy server",
    "output": "trials would all record into the same place",
    "multiAgent": "multi-agent jobs cannot be tuned yet",
}


def _camel(name: str) -> str:
    head, *rest = name.split("_")
    return head + "".join(p[:1].upper() + p[1:] for p in rest)


DOMAIN_KINDS = ("grid_search", "choice", "uniform", "loguniform", "randint")
# Values per gridSearch/choice list. Every value is validated against the spec (by render, run and the
# operator, on its event loop): 100,000 of them took seconds per parse. A thousand grid points is
# already a thousand trials; larger searches belong in a sampled range.
MAX_DOMAIN_VALUES = 1000


def _key(name: str) -> str:
    """One spelling per field: `train_batch_size`, `trainBatchSize` → `trainbatchsize`."""
    return _camel(name).lower()


class Domain(WireModel):
    """One hyperparameter's values: exactly one of the keys, named as Tune names its search spaces."""

    grid_search: list[Any] | None = Field(
        None,
        min_length=1,
        max_length=MAX_DOMAIN_VALUES,
        json_schema_extra=_ANY_ITEMS,
        description="Every value, each in its own trial (times numSamples); any JSON values.",
    )
    choice: list[Any] | None = Field(
        None,
        min_length=1,
        max_length=MAX_DOMAIN_VALUES,
        json_schema_extra=_ANY_ITEMS,
        description=(
            "One value drawn uniformly per trial. In PBT hyperparamMutations: an ordered list that "
            "perturbations shift along (to a neighbour) or resample from."
        ),
    )
    uniform: list[float] | None = Field(
        None, json_schema_extra=_RANGE, description="[low, high]: a float drawn uniformly."
    )
    loguniform: list[float] | None = Field(
        None,
        json_schema_extra=_RANGE,
        description="[low, high] with 0 < low: a float drawn uniformly in log space (learning rates).",
    )
    randint: list[int] | None = Field(
        None,
        json_schema_extra=_RANGE,
        description="[low, high]: an integer drawn uniformly from low to high - 1 (high excluded, as in Tune).",
    )

    @model_validator(mode="after")
    def _one_kind(self) -> Domain:
        given = [name for name in DOMAIN_KINDS if getattr(self, name) is not None]
        if len(given) != 1:
            names = ", ".join(_camel(n) for n in given) or "none"
            raise ValueError(
                f"give exactly one of gridSearch, choice, uniform, loguniform, randint (got {names})"
            )
        for name in ("uniform", "loguniform", "randint"):
            bounds = getattr(self, name)
            if bounds is None:
                continue
            if len(bounds) != 2:
                raise ValueError(f"{name}: expected [low, high], got {len(bounds)} numbers")
            low, high = bounds
            if not low < high:
                raise ValueError(f"{name}: low {low:g} must be below high {high:g}")
            if name == "loguniform" and low <= 0:
                raise ValueError(f"loguniform: low {low:g} must be positive (it is drawn in log space)")
        return self

    @property
    def kind(self) -> str:
        """The one key given, snake_case: grid_search, choice, uniform, loguniform or randint."""
        return next(n for n in DOMAIN_KINDS if getattr(self, n) is not None)

    def probe_values(self) -> list[Any]:
        """The values to validate against the spec: every listed value, and both ends of a range."""
        if self.grid_search is not None:
            return list(self.grid_search)
        if self.choice is not None:
            return list(self.choice)
        if self.randint is not None:
            return [self.randint[0], self.randint[1] - 1]
        bounds = self.uniform if self.uniform is not None else self.loguniform
        assert bounds is not None
        return list(bounds)


class AshaSpec(WireModel):
    """Asynchronous Successive Halving (Tune's ASHAScheduler): stops trials that trail at each rung."""

    grace_period: int = Field(1, ge=1, description="Iterations every trial runs before it can be stopped.")
    reduction_factor: float = Field(
        3.0, gt=1, description="At each rung only the best 1/reductionFactor of trials continue."
    )
    max_t: int = Field(
        100, ge=1, description="Iterations after which a trial stops in any case (the last rung)."
    )

    @model_validator(mode="after")
    def _rungs(self) -> AshaSpec:
        if self.grace_period > self.max_t:
            raise ValueError(
                f"gracePeriod {self.grace_period} is above maxT {self.max_t}: no trial could be stopped early"
            )
        return self


class PbtSpec(WireModel):
    """Population Based Training (Tune's PopulationBasedTraining): every perturbationInterval iterations,
    trials in the bottom quantile copy a top trial's checkpoint (exploit) and perturb its hyperparameters
    (explore)."""

    perturbation_interval: int = Field(
        5, ge=1, description="Iterations between exploit/explore decisions of a trial."
    )
    hyperparam_mutations: dict[str, Domain] = Field(
        ...,
        min_length=1,
        description=(
            "Field path (relative to spec, as --set takes it) to how it is explored: uniform/loguniform/randint "
            "are resampled with resampleProbability, else multiplied by 0.8 or 1.2; choice is an ordered list "
            "shifted to a neighbour or resampled. A path missing from paramSpace starts from a sample."
        ),
    )
    quantile_fraction: float = Field(
        0.25,
        gt=0,
        le=0.5,
        description="Fraction of trials in the bottom quantile that exploit the top quantile (same size).",
    )
    resample_probability: float = Field(
        0.25, ge=0, le=1, description="Probability of resampling a value instead of perturbing it."
    )
    synch: bool = Field(
        False,
        description=(
            "Synchronous PBT: every trial waits at each perturbation point until all have reached it, then the "
            "bottom quantile exploits the top. Slower, but decisions never depend on which trial ran first "
            "(small populations, fewer CPUs than trials)."
        ),
    )


class SchedulerSpec(WireModel):
    """How trials are scheduled and stopped early."""

    type: Literal["FIFO", "ASHA", "PBT"] = Field(
        "FIFO",
        description="FIFO: every trial runs to spec.stop. ASHA: early stopping (asha). PBT: population based training (pbt).",
    )
    asha: AshaSpec | None = Field(None, description="ASHA settings (type ASHA; defaults when left out).")
    pbt: PbtSpec | None = Field(None, description="PBT settings (required with type PBT).")

    @model_validator(mode="after")
    def _settings_match_type(self) -> SchedulerSpec:
        if self.asha is not None and self.type != "ASHA":
            raise ValueError(f"asha is set but type is {self.type}; set type: ASHA or drop asha")
        if self.pbt is not None and self.type != "PBT":
            raise ValueError(f"pbt is set but type is {self.type}; set type: PBT or drop pbt")
        if self.type == "PBT" and self.pbt is None:
            raise ValueError("type PBT needs pbt.hyperparamMutations: what to explore")
        return self


class TuneSpec(WireModel):
    """Run the job as a Ray Tune experiment: many trials of this spec with different hyperparameters."""

    param_space: dict[str, Domain] = Field(
        default_factory=dict,
        description=(
            "Field path relative to spec (as --set takes it, e.g. config.lr, config.model.fcnetHiddens, "
            "envConfig.size) to its search domain."
        ),
    )
    num_samples: int = Field(
        1,
        ge=1,
        description="Trials drawn from paramSpace; with gridSearch domains, each grid point is repeated this often.",
    )
    metric: str = Field(
        "episode_return_mean",
        description=(
            "Result key that ranks trials: episode_return_mean, evaluation/episode_return_mean, a learner/… "
            "statistic, …"
        ),
    )
    mode: Literal["max", "min"] = Field("max", description="Whether a higher or lower metric is better.")
    max_concurrent_trials: int = Field(
        2,
        ge=1,
        description=(
            "Trials running at once. On Kubernetes the Ray cluster's env-runner workers are sized for this "
            "many trials."
        ),
    )
    search_seed: int | None = Field(
        0, ge=0, description="Seed of the random search (choice, uniform, …), for reproducible sweeps."
    )
    scheduler: SchedulerSpec = Field(default_factory=SchedulerSpec, description="FIFO, ASHA or PBT.")

    def domains(self) -> Iterator[tuple[str, str, Domain]]:
        """(spec field holding it, path, domain) for every domain in paramSpace and PBT's mutations."""
        for path, domain in self.param_space.items():
            yield "paramSpace", path, domain
        pbt = self.scheduler.pbt
        if pbt is not None:
            for path, domain in pbt.hyperparam_mutations.items():
                yield "scheduler.pbt.hyperparamMutations", path, domain


def trial_cpus(resources: ResourcesSpec) -> float:
    """CPUs one trial reserves: its own actor (the algorithm's driver and learner) and its env runners.
    The trainer's placement groups (kuberl.tune.space.trial_bundles) and the operator's Ray cluster size
    (kuberl_operator.builders) both follow this."""
    return resources.cpus_per_learner + resources.env_runners * resources.cpus_per_runner


# -- applying trial values to a spec (pure; used by the validator here and by each trial) -------------
def split_path(path: str) -> list[str]:
    return [p for p in path.strip().split(".") if p]


def set_path(doc: dict[str, Any], path: str, value: Any) -> None:
    """Set `path` (relative to `doc`, dots between fields) to `value`, creating mappings on the way.
    Any other spelling of the same field (snake_case vs camelCase) is replaced, so the value set wins."""
    parts = split_path(path)
    node = doc
    for depth, part in enumerate(parts):
        same = [k for k in node if _key(k) == _key(part)]
        if depth == len(parts) - 1:
            for k in same:
                del node[k]
            node[part] = copy.deepcopy(value)
            return
        nxt = node[same[0]] if same else None
        if nxt is None:
            nxt = node[same[0] if same else part] = {}
        if not isinstance(nxt, dict):
            raise ValueError(f"{'.'.join(parts[: depth + 1])} is not a mapping")
        node = nxt


def trial_spec_doc(base: Mapping[str, Any], values: Mapping[str, Any]) -> dict[str, Any]:
    """The raw spec of one trial: `base` (a spec document) with `values` set at their paths."""
    doc = json.loads(json.dumps(dict(base)))
    doc.pop("tune", None)
    for path, value in values.items():
        set_path(doc, path, value)
    return doc


def base_spec_doc(spec: RLTrainingJobSpec) -> dict[str, Any]:
    """The fields the user set, in camelCase, without tune (what trials start from)."""
    doc: dict[str, Any] = spec.model_dump(mode="json", by_alias=True, exclude_unset=True)
    doc.pop("tune", None)
    return doc


# -- validation ----------------------------------------------------------------------------------------
def _metric_problem(tune: TuneSpec, spec: RLTrainingJobSpec) -> str | None:
    m = tune.metric
    if m.startswith("evaluation/") and m in KNOWN_METRICS and not spec.evaluation.interval:
        return f"{m} is only reported with evaluation.interval > 0"
    if m in KNOWN_METRICS or (m.startswith(METRIC_PREFIXES) and len(m.split("/")) > 1):
        return None
    return (
        f"unknown metric {m!r}; use one of {', '.join(KNOWN_METRICS)}, or a learner/<policy>/<statistic> key"
    )


def _value_problems(spec: RLTrainingJobSpec, where: str, path: str, domain: Domain) -> list[Problem]:
    from kuberl.spec.errors import SpecError
    from kuberl.spec.load import parse_spec

    field = f"tune.{where}.{path}"
    parts = path.split(".")
    if any(not re.fullmatch(r"[A-Za-z_][\w-]*", p) for p in parts):
        return [(field, f"{path!r} is not a field path like config.lr")]
    fixed = next((k for k in _FIXED_PATHS if _key(k) == _key(parts[0])), None)
    if fixed is not None:
        return [(field, f"{parts[0]} cannot vary between trials: {_FIXED_PATHS[fixed]}")]
    if where.startswith("scheduler.pbt") and domain.grid_search is not None:
        return [(field, "gridSearch is not a mutation; use choice (an ordered list) or a range")]
    base = base_spec_doc(spec)
    for value in domain.probe_values():
        try:
            parse_spec(trial_spec_doc(base, {path: value}))
        except SpecError as exc:
            reasons = "; ".join(
                f"{p.removeprefix('spec.')}: {r}" if p.removeprefix("spec.") != path else r
                for p, r in exc.problems
            )
            return [(field, f"value {json.dumps(value)} makes the spec invalid: {reasons}")]
    return []


def tune_problems(spec: RLTrainingJobSpec) -> list[Problem]:
    """(field relative to `spec`, reason) for each way this sweep cannot run."""
    tune = spec.tune
    if tune is None:
        return []
    problems: list[Problem] = []
    if spec.multi_agent is not None:
        problems.append(
            (
                "tune",
                "multiAgent jobs cannot be tuned yet (per-policy configs and metrics are not mapped to trials)",
            )
        )
    if spec.external.enabled:
        problems.append(("tune", "external simulators connect to one policy server; trials cannot share it"))
    if spec.output is not None:
        problems.append(("tune", "every trial would record into the same output; drop output or tune"))
    if spec.resources.learners > 1:
        problems.append(
            (
                "tune",
                "data-parallel learners (resources.learners > 1) inside trials are not supported; use learners: 1",
            )
        )
    if spec.resume not in ("auto", "never"):
        problems.append(
            (
                "resume",
                "a sweep resumes its own experiment (auto) or starts fresh (never), not from one checkpoint",
            )
        )
    reason = _metric_problem(tune, spec)
    if reason:
        problems.append(("tune.metric", reason))
    if spec.stop.is_empty() and tune.scheduler.type != "ASHA":  # ASHA stops every trial at maxT
        problems.append(("stop", "a sweep needs stop criteria, or every trial runs forever"))
    pbt = tune.scheduler.pbt
    if pbt is not None:
        if spec.stop.iterations is not None and spec.stop.iterations <= pbt.perturbation_interval:
            problems.append(
                (
                    "tune.scheduler.pbt.perturbationInterval",
                    f"{pbt.perturbation_interval} is not below stop.iterations ({spec.stop.iterations}): "
                    "no trial would ever exploit another's checkpoint",
                )
            )
        if tune.num_samples < 2 and not any(d.grid_search for d in tune.param_space.values()):
            problems.append(("tune.numSamples", "PBT needs a population: at least 2 trials"))
    if pbt is not None and not spec.checkpoint.at_end and not spec.checkpoint.every_iterations:
        problems.append(
            (
                "checkpoint",
                "PBT exploits by restoring another trial's checkpoint, and this job turns checkpoints off "
                "(everyIterations: 0, atEnd: false)",
            )
        )
    for where, path, domain in tune.domains():
        problems += _value_problems(spec, where, path, domain)
    return problems
