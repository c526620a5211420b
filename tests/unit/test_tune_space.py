"""spec.tune → Ray Tune objects (search space, mutations, schedulers, stopper, resources) and results."""

from __future__ import annotations

import math
from typing import Any

import pytest

pytest.importorskip("ray.tune")

from ray.tune.schedulers import ASHAScheduler, FIFOScheduler, PopulationBasedTraining
from ray.tune.search.sample import Categorical, Float, Integer

from kuberl.spec import ResourcesSpec, StopSpec
from kuberl.spec.tune import Domain, TuneSpec, trial_cpus
from kuberl.tune import space
from kuberl.tune.report import TrialRow, best_of, pick_best
from kuberl.tune.trainable import trial_document, trial_index


def test_domains_convert_to_tune_search_spaces() -> None:
    grid = space.to_domain(Domain(grid_search=[1, 2]))
    assert grid == {"grid_search": [1, 2]}
    choice = space.to_domain(Domain(choice=["a", "b"]))
    assert isinstance(choice, Categorical)
    assert choice.categories == ["a", "b"]
    uniform = space.to_domain(Domain(uniform=[0.5, 1.5]))
    assert isinstance(uniform, Float)
    assert (uniform.lower, uniform.upper) == (0.5, 1.5)
    log = space.to_domain(Domain(loguniform=[1e-5, 1e-2]))
    assert isinstance(log, Float)
    assert "LogUniform" in type(log.sampler).__name__
    values = log.sample(size=200)
    assert all(1e-5 <= v <= 1e-2 for v in values)
    # log-uniform: about a third of the draws in each decade
    assert 30 < sum(v < 1e-4 for v in values) < 110
    integers = space.to_domain(Domain(randint=[2, 5]))
    assert isinstance(integers, Integer)
    assert set(integers.sample(size=200)) == {2, 3, 4}


def test_param_space_is_flat_by_path() -> None:
    tune = TuneSpec(param_space={"config.lr": Domain(grid_search=[0.1]), "envConfig.n": Domain(choice=[1])})
    assert set(space.param_space(tune)) == {"config.lr", "envConfig.n"}


def test_pbt_mutations_choice_is_an_ordered_list_ranges_are_domains() -> None:
    assert space.to_mutation(Domain(choice=[2, 4, 8])) == [2, 4, 8]
    assert isinstance(space.to_mutation(Domain(loguniform=[1e-4, 1e-2])), Float)


def test_schedulers_carry_the_spec_settings() -> None:
    assert isinstance(space.scheduler(TuneSpec()), FIFOScheduler)
    asha = space.scheduler(
        TuneSpec.model_validate({"scheduler": {"type": "ASHA", "asha": {"gracePeriod": 3, "maxT": 27}}})
    )
    assert isinstance(asha, ASHAScheduler)
    assert asha._time_attr == "training_iteration"
    assert asha._max_t == 27
    assert asha._brackets[0]._rungs[-1][0] == 3  # the first rung at the grace period
    pbt = space.scheduler(
        TuneSpec.model_validate(
            {
                "scheduler": {
                    "type": "PBT",
                    "pbt": {
                        "perturbationInterval": 7,
                        "quantileFraction": 0.5,
                        "hyperparamMutations": {"config.numEpochs": {"choice": [2, 4]}},
                    },
                }
            }
        )
    )
    assert isinstance(pbt, PopulationBasedTraining)
    assert pbt._perturbation_interval == 7
    assert pbt._quantile_fraction == 0.5
    assert pbt._hyperparam_mutations == {"config.numEpochs": [2, 4]}


@pytest.mark.parametrize(
    ("stop", "result", "stops"),
    [
        (
            StopSpec(iterations=3),
            {"training_iteration": 2, "timesteps_total": 10, "time_total_s": 1.0},
            False,
        ),
        (StopSpec(iterations=3), {"training_iteration": 3, "timesteps_total": 10, "time_total_s": 1.0}, True),
        (
            StopSpec(timesteps=100),
            {"training_iteration": 1, "timesteps_total": 100, "time_total_s": 1.0},
            True,
        ),
        (
            StopSpec(time_seconds=5),
            {"training_iteration": 1, "timesteps_total": 1, "time_total_s": 5.5},
            True,
        ),
        # no episode finished yet: the return criterion waits instead of failing on the missing key
        (
            StopSpec(episode_return_mean=100),
            {"training_iteration": 1, "timesteps_total": 1, "time_total_s": 1.0},
            False,
        ),
        (
            StopSpec(episode_return_mean=100),
            {
                "training_iteration": 1,
                "timesteps_total": 1,
                "time_total_s": 1.0,
                "episode_return_mean": 101.0,
            },
            True,
        ),
    ],
)
def test_spec_stop_becomes_the_trial_stopper(stop: StopSpec, result: dict[str, Any], stops: bool) -> None:
    stopper = space.SpecStopper(stop)
    assert stopper("t_00000", result) is stops
    assert stopper.stop_all() is False


def test_trial_bundles_hold_the_trial_and_its_runners() -> None:
    res = ResourcesSpec(env_runners=2, cpus_per_runner=0.5, cpus_per_learner=1.0, gpus_per_learner=0.5)
    assert space.trial_bundles(res) == [{"CPU": 1.0, "GPU": 0.5}, {"CPU": 0.5}, {"CPU": 0.5}]
    assert trial_cpus(res) == 2.0 == sum(b["CPU"] for b in space.trial_bundles(res))
    assert space.trial_bundles(ResourcesSpec(env_runners=0)) == [{"CPU": 1.0}]


def test_flatten_result_drops_unknown_values_and_nests_with_slashes() -> None:
    flat = space.flatten_result(
        {
            "training_iteration": 2,
            "episode_return_mean": None,
            "nan": math.nan,
            "timers": {"sample": 0.5},
            "learner": {"default_policy": {"total_loss": 1.5, "kl": None}},
            "done": False,
            "tags": [1, 2],
        }
    )
    assert flat == {
        "training_iteration": 2,
        "timers/sample": 0.5,
        "learner/default_policy/total_loss": 1.5,
        "done": False,
    }


def test_trial_document_sets_values_seed_and_turns_metrics_off() -> None:
    doc = {
        "apiVersion": "kuberl.io/v1alpha1",
        "kind": "RLTrainingJob",
        "metadata": {"name": "t"},
        "spec": {"seed": 5, "config": {"lr": 0.1}, "metrics": {"port": 9000}, "tune": {}},
    }
    out = trial_document(doc, {"config.lr": 0.2}, run_dir="/r/t1", index=trial_index("ab12c_00003"))
    assert out["spec"] == {
        "seed": 8,
        "config": {"lr": 0.2},
        "metrics": {"enabled": False},
        "runDir": "/r/t1",
        "resume": "never",
    }
    assert doc["spec"]["config"] == {"lr": 0.1}


def _row(trial_id: str, last: float | None) -> TrialRow:
    return TrialRow(trial_id, {}, "TERMINATED", 1, 1, last, last, None)


def test_best_trial_by_last_result_and_mode() -> None:
    rows = [_row("a", 10.0), _row("b", None), _row("c", 30.0)]
    assert pick_best(rows, mode="max") is rows[2]
    assert pick_best(rows, mode="min") is rows[0]
    assert pick_best([_row("b", None)], mode="max") is None
    assert best_of([1.0, math.nan, 3.0, None], mode="max") == 3.0
