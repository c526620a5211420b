"""Custom algorithms (`spec.algorithm: pkg.mod:Class`, kuberl.spec.custom, docs/custom-algorithms.md):
validation imports the class and validates `config` against its config model, taking its capabilities
from it; the operator's parse defers both; checkpoints restore it through the CLI."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, ClassVar

import pytest
import yaml

from examples.custom_algo import EntropyTargetPPO, EntropyTargetPPOConfig
from kuberl.algorithms.dqn import DQN
from kuberl.algorithms.ppo import PPO
from kuberl.algorithms.registry import algorithm_class
from kuberl.spec import SpecError, parse_job
from kuberl.spec.algorithms import PPOConfig
from kuberl.spec.algorithms.dqn import DQNConfig
from kuberl.spec.custom import DeferredConfig, deferred_custom_algorithms
from kuberl_operator.builders import job_document
from kuberl_operator.parsing import parse_body
from tests.cli import kuberl

ROOT = Path(__file__).resolve().parents[2]
CUSTOM = "examples.custom_algo:EntropyTargetPPO"


class NoConfigClass(PPO):
    """A PPO subclass that does not name its config model."""


class CustomDQN(DQN):
    """A custom algorithm on DQN's config: no observation filter, no reward normalization."""

    config_class = DQNConfig


class NotAnAlgorithm:
    config_class: ClassVar[type[PPOConfig]] = PPOConfig


def doc(algorithm: str = CUSTOM, **config: Any) -> dict[str, Any]:
    return {
        "apiVersion": "kuberl.io/v1alpha1",
        "kind": "RLTrainingJob",
        "metadata": {"name": "custom"},
        "spec": {"algorithm": algorithm, "env": "CartPole-v1", "config": config},
    }


def problems(document: dict[str, Any]) -> dict[str, str]:
    with pytest.raises(SpecError) as err:
        parse_job(document)
    return dict(err.value.problems)


def test_config_is_validated_against_the_algorithms_own_model() -> None:
    job = parse_job(doc(entropyTarget=0.2, train_batch_size=256, minibatch_size=64))
    config = job.spec.config
    assert type(config) is EntropyTargetPPOConfig
    assert (config.entropy_target, config.train_batch_size, config.minibatch_size) == (0.2, 256, 64)
    assert job.spec.algorithm == CUSTOM
    assert algorithm_class(job.spec.algorithm) is EntropyTargetPPO
    # Its own fields and the inherited PPO rules alike, each named under spec.config.
    assert problems(doc(entropyTarget=-1, bogus=1, minibatch_size=4096)) == {
        "spec.config.entropyTarget": "Input should be greater than or equal to 0",
        "spec.config.bogus": "unknown field (check the spelling; see `kuberl crd` for the schema)",
    }


def test_capabilities_come_from_the_config_model() -> None:
    """EntropyTargetPPOConfig turns recurrent policies off (PPO has them): refused, naming the class."""
    assert "recurrent" in str(problems(doc(model={"useLstm": True}))["spec.config"])
    assert (
        "EntropyTargetPPOConfig cannot train a recurrent policy"
        in problems(doc(model={"useLstm": True}))["spec.config"]
    )
    parse_job(doc("PPO", model={"useLstm": True}))  # the built-in still can


@pytest.mark.parametrize("algorithm", ["DQN", f"{__name__}:CustomDQN"])
@pytest.mark.parametrize(
    ("edit", "field"),
    [
        ({"normalize_rewards": True}, "normalizeRewards"),
        ({"observation_filter": "MeanStdFilter"}, "observationFilter"),
    ],
)
def test_the_trainer_refuses_a_capability_as_validation_does(
    algorithm: str, edit: dict[str, Any], field: str
) -> None:
    """Built-in or custom, the trainer (which also sees jobs nothing validated, e.g. with the rules lifted)
    names the same field with the same words as validation."""
    job = parse_job(doc(algorithm))
    # model_copy skips validation: the job as it would reach the trainer with the rules lifted.
    config = job.spec.config.model_copy(update=edit)
    job = job.model_copy(update={"spec": job.spec.model_copy(update={"config": config})})
    with pytest.raises(SpecError) as err:
        algorithm_class(algorithm)(job)
    validation = problems(doc(algorithm, **{field: next(iter(edit.values()))}))
    assert dict(err.value.problems) == validation
    assert list(validation) == [f"spec.config.{field}"]
    assert algorithm in validation[f"spec.config.{field}"]


@pytest.mark.parametrize(
    ("algorithm", "reason"),
    [
        ("no_such_pkg.algos:MyPPO", "cannot import 'no_such_pkg.algos': ModuleNotFoundError"),
        ("examples.custom_algo:Nope", "module 'examples.custom_algo' has no attribute 'Nope'"),
        (f"{__name__}:NotAnAlgorithm", "is not a kuberl.algorithms.base.Algorithm subclass"),
        (f"{__name__}:NoConfigClass", "config_class must name its config model"),
        ("examples.custom_algo:EntropyTargetLearner", "is not a kuberl.algorithms.base.Algorithm subclass"),
    ],
)
def test_an_unusable_class_is_refused_on_algorithm_alone(algorithm: str, reason: str) -> None:
    found = problems(doc(algorithm, anything=1))
    assert list(found) == ["spec.algorithm"], found  # config is not also reported
    assert reason in found["spec.algorithm"]


def test_a_name_that_is_neither_is_refused() -> None:
    found = problems(doc("examples.custom_algo:"))
    assert "unknown algorithm" in found["spec.algorithm"]
    assert "module:Class" in found["spec.algorithm"]


def test_the_operator_defers_to_the_trainer_and_passes_the_config_through() -> None:
    """The operator never imports user code: its parse keeps the config as written (even for a module
    that is not installed there), and the ConfigMap the pod reads holds it unchanged."""
    body = doc("my_pkg.algos:MyPPO", auxLossCoeff=0.1, model={"fcnetHiddens": [32]})
    body["spec"]["input"] = {"uris": ["/data"]}  # the trainer checks its combinations
    job = parse_body(body)
    assert isinstance(job.spec.config, DeferredConfig)
    assert job_document(job)["spec"]["config"] == {"auxLossCoeff": 0.1, "model": {"fcnetHiddens": [32]}}
    with deferred_custom_algorithms(), pytest.raises(SpecError):  # built-ins: validated in full
        parse_job(doc("PPO", auxLossCoeff=0.1))
    assert "spec.algorithm" in problems(body)  # the trainer's parse: not importable


def test_run_evaluate_and_resume_through_the_cli(tmp_path: Path) -> None:
    """`kuberl run` of the example writes a checkpoint recording the class path; `kuberl evaluate`
    restores it; resuming it as another algorithm is refused (exit 2, naming spec.algorithm); a bad
    class is refused before anything is written."""
    example = str(ROOT / "examples" / "ppo-custom-loss.yaml")
    tiny = ["--no-progress", "--set", "stop.timesteps=1", "--set", "resources.envRunners=0"]
    tiny += ["--set", "metrics.enabled=false", "--set", "config.train_batch_size=256"]
    tiny += ["--set", "config.minibatch_size=128"]
    run = kuberl("run", example, "--run-dir", "run", *tiny, cwd=tmp_path)
    assert run.returncode == 0, run.stderr[-2000:]
    (checkpoint,) = (tmp_path / "run" / "checkpoints").glob("checkpoint_*")
    saved = json.loads((checkpoint / "job.json").read_text())["spec"]
    assert saved["algorithm"] == CUSTOM
    assert saved["config"]["entropyTarget"] == 0.3  # the custom model's own fields are kept
    evaluated = kuberl("evaluate", str(checkpoint), "--episodes", "2", cwd=tmp_path)
    assert evaluated.returncode == 0, evaluated.stderr[-2000:]
    assert json.loads(evaluated.stdout)["episodes"] == 2

    other = yaml.safe_load((ROOT / "examples" / "ppo-job.yaml").read_text())
    other["metadata"]["name"] = "ppo-custom-loss"
    (tmp_path / "ppo.yaml").write_text(yaml.safe_dump(other))
    resumed = kuberl("run", "ppo.yaml", "--run-dir", "run", *tiny, cwd=tmp_path)
    assert resumed.returncode == 2, resumed.stderr[-2000:]
    assert "spec.algorithm: changed since" in resumed.stderr
    assert "Traceback" not in resumed.stderr

    bad = kuberl(
        "run", example, "--run-dir", "bad", "--set", "algorithm=examples.custom_algo:Nope", cwd=tmp_path
    )
    assert bad.returncode == 2, bad.stderr[-2000:]
    assert "spec.algorithm: module 'examples.custom_algo' has no attribute 'Nope'" in bad.stderr
    assert "Traceback" not in bad.stderr
    assert not (tmp_path / "bad").exists()
