"""spec.tune → what Ray Tune takes: the search space, PBT's mutations, the scheduler, the stopper and each
trial's resources. Pure functions of the spec; nothing here starts Ray or touches storage."""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

from ray import tune
from ray.tune.schedulers import ASHAScheduler, FIFOScheduler, PopulationBasedTraining, TrialScheduler
from ray.tune.stopper import Stopper

from kuberl.spec import ResourcesSpec, StopSpec
from kuberl.spec.tune import Domain, TuneSpec
from kuberl.trainer import stop_reason

# Schedulers count time in training iterations: the same unit as stop.iterations and checkpoint.everyIterations.
TIME_ATTR = "training_iteration"
RESULT_DELIMITER = "/"


def to_domain(domain: Domain) -> Any:
    """One spec domain as Tune's search-space object."""
    if domain.grid_search is not None:
        return tune.grid_search(list(domain.grid_search))
    if domain.choice is not None:
        return tune.choice(list(domain.choice))
    if domain.uniform is not None:
        return tune.uniform(*domain.uniform)
    if domain.loguniform is not None:
        return tune.loguniform(*domain.loguniform)
    assert domain.randint is not None
    return tune.randint(*domain.randint)


def param_space(spec: TuneSpec) -> dict[str, Any]:
    """Tune's param_space: one flat key per field path. Trials get {path: value} as their config."""
    return {path: to_domain(domain) for path, domain in spec.param_space.items()}


def to_mutation(domain: Domain) -> Any:
    """A PBT mutation: `choice` is the ordered list PBT shifts along; ranges are domains PBT resamples
    or multiplies by 0.8/1.2."""
    if domain.choice is not None:
        return list(domain.choice)
    return to_domain(domain)


def scheduler(spec: TuneSpec) -> TrialScheduler:
    """The trial scheduler; metric and mode are given to the TuneConfig, not here."""
    s = spec.scheduler
    if s.type == "ASHA":
        from kuberl.spec.tune import AshaSpec

        asha = s.asha or AshaSpec()
        return ASHAScheduler(
            time_attr=TIME_ATTR,
            grace_period=asha.grace_period,
            reduction_factor=asha.reduction_factor,
            max_t=asha.max_t,
        )
    if s.type == "PBT":
        assert s.pbt is not None
        return PopulationBasedTraining(
            time_attr=TIME_ATTR,
            perturbation_interval=s.pbt.perturbation_interval,
            hyperparam_mutations={p: to_mutation(d) for p, d in s.pbt.hyperparam_mutations.items()},
            quantile_fraction=s.pbt.quantile_fraction,
            resample_probability=s.pbt.resample_probability,
            synch=s.pbt.synch,
        )
    return FIFOScheduler()


class SpecStopper(Stopper):
    """spec.stop for every trial, with the rules `kuberl run` applies to a single run
    (kuberl.trainer.stop_reason): a trial that has not finished an episode yet is not stopped by
    episodeReturnMean. A dict stopper would instead fail on the missing key."""

    def __init__(self, stop: StopSpec) -> None:
        self.stop = stop

    def __call__(self, trial_id: str, result: dict[str, Any]) -> bool:
        return stop_reason(self.stop, result) is not None

    def stop_all(self) -> bool:
        return False


def trial_bundles(resources: ResourcesSpec) -> list[dict[str, float]]:
    """A trial's placement group (kuberl.spec.tune.trial_cpus CPUs in all): the trial actor (driver and learner) first, then one bundle per
    EnvRunner actor, which Tune's placement group captures when the algorithm creates them."""
    head: dict[str, float] = {"CPU": resources.cpus_per_learner}
    if resources.gpus_per_learner > 0:
        head["GPU"] = resources.gpus_per_learner
    return [head] + [{"CPU": resources.cpus_per_runner} for _ in range(resources.env_runners)]


def _flatten(prefix: str, value: Any, out: dict[str, Any]) -> None:
    if isinstance(value, Mapping):
        for k, v in value.items():
            _flatten(f"{prefix}{RESULT_DELIMITER}{k}" if prefix else str(k), v, out)
    elif value is None or (isinstance(value, float) and math.isnan(value)):
        return  # absent, not NaN: schedulers skip a result without their metric
    elif isinstance(value, bool | int | float | str):
        out[prefix] = value


def flatten_result(result: Mapping[str, Any]) -> dict[str, Any]:
    """An Algorithm result as one flat dict of scalars (`learner/default_policy/total_loss`), as Tune's
    loggers, schedulers and `tune.metric` read it. Unknown values (no episode finished yet) are left out."""
    out: dict[str, Any] = {}
    _flatten("", result, out)
    return out
