"""spec.tune validation: every problem names its field and the reason, before anything runs."""

from __future__ import annotations

from typing import Any

import pytest

from kuberl.spec import SpecError, parse_job
from kuberl.spec.tune import set_path, trial_spec_doc


def job(tune: dict[str, Any], **spec: Any) -> dict[str, Any]:
    return {
        "apiVersion": "kuberl.io/v1alpha1",
        "kind": "RLTrainingJob",
        "metadata": {"name": "t"},
        "spec": {
            "algorithm": "PPO",
            "env": "CartPole-v1",
            "config": {"train_batch_size": 512, "minibatch_size": 128},
            "stop": {"iterations": 10},
            **spec,
            "tune": tune,
        },
    }


def problems(doc: dict[str, Any]) -> dict[str, str]:
    with pytest.raises(SpecError) as err:
        parse_job(doc)
    return dict(err.value.problems)


def test_a_valid_sweep_parses_with_every_domain() -> None:
    spec = parse_job(
        job(
            {
                "paramSpace": {
                    "config.lr": {"loguniform": [1e-5, 1e-2]},
                    "config.gamma": {"uniform": [0.9, 0.999]},
                    "config.num_epochs": {"randint": [2, 9]},
                    "config.model.fcnetHiddens": {"gridSearch": [[64, 64], [128]]},
                    "config.model.fcnet_activation": {"choice": ["tanh", "relu"]},
                },
                "numSamples": 3,
                "scheduler": {"type": "ASHA", "asha": {"gracePeriod": 2}},
            }
        )
    ).spec
    assert spec.tune is not None
    assert spec.tune.param_space["config.lr"].kind == "loguniform"
    assert spec.tune.scheduler.asha is not None
    assert spec.tune.scheduler.asha.max_t == 100


@pytest.mark.parametrize(
    ("param_space", "field", "words"),
    [
        ({"config.lrr": {"choice": [0.1]}}, "spec.tune.paramSpace.config.lrr", "unknown field"),
        ({"config.lr": {"gridSearch": [0.001, -1]}}, "spec.tune.paramSpace.config.lr", "value -1"),
        ({"config.lr": {"uniform": [-1, 0.1]}}, "spec.tune.paramSpace.config.lr", "greater than 0"),
        (
            {"config.model.fcnetHiddens": {"choice": [[64], [0]]}},
            "spec.tune.paramSpace.config.model.fcnetHiddens",
            "greater than or equal to 1",
        ),
        ({"config.numEpochs": {"randint": [0, 3]}}, "spec.tune.paramSpace.config.numEpochs", "value 0"),
        (
            {"resources.envRunners": {"choice": [1, 2]}},
            "spec.tune.paramSpace.resources.envRunners",
            "resources",
        ),
        ({"algorithm": {"choice": ["PPO"]}}, "spec.tune.paramSpace.algorithm", "one algorithm"),
        ({"config..lr": {"choice": [1]}}, "spec.tune.paramSpace.config..lr", "not a field path"),
        (
            {"config.lr": {"choice": [0.1], "uniform": [0, 1]}},
            "spec.tune.paramSpace.config.lr",
            "exactly one",
        ),
        ({"config.lr": {"loguniform": [0, 1]}}, "spec.tune.paramSpace.config.lr", "positive"),
        ({"config.lr": {"uniform": [1, 0.1]}}, "spec.tune.paramSpace.config.lr", "below high"),
        ({"config.lr": {"uniform": [0.1]}}, "spec.tune.paramSpace.config.lr", "expected [low, high]"),
    ],
)
def test_bad_param_space_names_the_field(param_space: dict[str, Any], field: str, words: str) -> None:
    found = problems(job({"paramSpace": param_space}))
    assert field in found, found
    assert words in found[field]


def test_unknown_metric_and_evaluation_metric_without_evaluation() -> None:
    assert "unknown metric" in problems(job({"metric": "reward"}))["spec.tune.metric"]
    found = problems(job({"metric": "evaluation/episode_return_mean"}))
    assert "evaluation.interval" in found["spec.tune.metric"]
    parse_job(job({"metric": "learner/default_policy/total_loss", "mode": "min"}))


def test_pbt_needs_mutations_a_population_and_checkpoints() -> None:
    pbt = {"perturbationInterval": 2, "hyperparamMutations": {"config.lr": {"loguniform": [1e-4, 1e-2]}}}
    assert "hyperparamMutations" in problems(job({"scheduler": {"type": "PBT"}}))["spec.tune.scheduler"]
    assert "population" in problems(job({"scheduler": {"type": "PBT", "pbt": pbt}}))["spec.tune.numSamples"]
    two = {"numSamples": 2, "scheduler": {"type": "PBT", "pbt": pbt}}
    parse_job(job(two))
    found = problems(job(two, checkpoint={"everyIterations": 0, "atEnd": False}))
    assert "turns checkpoints off" in found["spec.checkpoint"]
    found = problems(job(two, stop={"iterations": 2}))
    assert "no trial would ever exploit" in found["spec.tune.scheduler.pbt.perturbationInterval"]
    grid = {**pbt, "hyperparamMutations": {"config.lr": {"gridSearch": [0.1, 0.2]}}}
    found = problems(job({"numSamples": 2, "scheduler": {"type": "PBT", "pbt": grid}}))
    assert "gridSearch is not a mutation" in found["spec.tune.scheduler.pbt.hyperparamMutations.config.lr"]
    bad = {**pbt, "hyperparamMutations": {"config.lr": {"choice": [0.1, -0.2]}}}
    found = problems(job({"numSamples": 2, "scheduler": {"type": "PBT", "pbt": bad}}))
    assert "value -0.2" in found["spec.tune.scheduler.pbt.hyperparamMutations.config.lr"]
    asha_on_pbt = {"type": "PBT", "pbt": pbt, "asha": {}}
    assert "asha is set" in problems(job({"numSamples": 2, "scheduler": asha_on_pbt}))["spec.tune.scheduler"]


def test_refused_combinations_say_why() -> None:
    assert "policy server" in problems(job({}, external={"enabled": True}))["spec.tune"]
    assert "learners" in problems(job({}, resources={"learners": 2}))["spec.tune"]
    assert "output" in problems(job({}, output={"uri": "/tmp/x"}))["spec.tune"]
    assert "resumes its own experiment" in problems(job({}, resume="/tmp/ckpt"))["spec.resume"]
    assert "runs forever" in problems(job({}, stop={}))["spec.stop"]
    parse_job(job({"scheduler": {"type": "ASHA"}}, stop={}))  # ASHA's maxT ends every trial


def test_set_path_replaces_either_spelling_and_creates_mappings() -> None:
    doc: dict[str, Any] = {"config": {"train_batch_size": 512, "model": {"fcnetHiddens": [8]}}}
    set_path(doc, "config.trainBatchSize", 1024)
    set_path(doc, "config.model.fcnet_hiddens", [16, 16])
    set_path(doc, "envConfig.size", 3)
    assert doc == {
        "config": {"trainBatchSize": 1024, "model": {"fcnet_hiddens": [16, 16]}},
        "envConfig": {"size": 3},
    }
    with pytest.raises(ValueError, match="not a mapping"):
        set_path(doc, "config.trainBatchSize.x", 1)


def test_trial_spec_doc_copies_and_drops_tune() -> None:
    base = {"config": {"lr": 0.1}, "tune": {"paramSpace": {}}}
    doc = trial_spec_doc(base, {"config.lr": 1e-7})
    assert doc == {"config": {"lr": 1e-7}}
    assert base["config"] == {"lr": 0.1}
