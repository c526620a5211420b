"""RLTrainingJob validation: field paths in messages, both spellings, RLlib names, overrides."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from kuberl.spec import PPOConfig, SpecError, apply_overrides, load_job, parse_job

ROOT = Path(__file__).resolve().parents[2]


def doc(**spec: Any) -> dict[str, Any]:
    base: dict[str, Any] = {"algorithm": "PPO", "env": "CartPole-v1"}
    base.update(spec)
    return {
        "apiVersion": "kuberl.io/v1alpha1",
        "kind": "RLTrainingJob",
        "metadata": {"name": "t"},
        "spec": base,
    }


def problems(d: dict[str, Any]) -> dict[str, str]:
    with pytest.raises(SpecError) as info:
        parse_job(d)
    return dict(info.value.problems)


def test_examples_validate() -> None:
    for path in sorted((ROOT / "examples").glob("*.yaml")):
        job = load_job(path)
        assert job.metadata.name


def test_snake_and_camel_case_and_rllib_names_are_equivalent() -> None:
    a = parse_job(
        doc(config={"train_batch_size": 512, "sgd_minibatch_size": 64, "num_sgd_iter": 3, "lambda": 0.9})
    )
    b = parse_job(doc(config={"trainBatchSize": 512, "minibatchSize": 64, "numEpochs": 3, "lambda_": 0.9}))
    assert a.spec.config == b.spec.config
    cfg = a.spec.config
    assert isinstance(cfg, PPOConfig)
    assert (cfg.train_batch_size, cfg.minibatch_size, cfg.num_epochs, cfg.lambda_) == (512, 64, 3, 0.9)
    # The wire form is camelCase and parses back to the same job.
    wire = a.to_wire()
    assert wire["spec"]["config"]["trainBatchSize"] == 512
    assert parse_job(wire) == a


@pytest.mark.parametrize(
    ("spec", "path", "words"),
    [
        ({"algorithm": "XYZ"}, "spec.algorithm", "unknown algorithm"),
        ({"env": "not an env!"}, "spec.env", "Gymnasium id"),
        ({"config": {"minibatch_size": 999, "train_batch_size": 100}}, "spec.config", "must not exceed"),
        ({"config": {"lr": "fast"}}, "spec.config.lr", "valid number"),
        ({"config": {"lr": -1}}, "spec.config.lr", "greater than 0"),
        ({"config": {"bogus": 1}}, "spec.config.bogus", "unknown field"),
        ({"resources": {"envRunners": -1}}, "spec.resources.envRunners", "greater than or equal to 0"),
        ({"stop": {"timesteps": 0}}, "spec.stop.timesteps", "greater than or equal to 1"),
        ({"checkpoint": {"uri": "gs://bucket/x"}}, "spec.checkpoint.uri", "unsupported scheme"),
        ({"resume": "sometimes"}, "spec.resume", "not 'auto'"),
        ({"cluster": {"head": {"memory": "lots"}}}, "spec.cluster.head.memory", "Kubernetes quantity"),
        ({"unknownTopLevel": True}, "spec.unknownTopLevel", "unknown field"),
        (
            {"config": {"model": {"fcnet_activation": "sigmoid"}}},
            "spec.config.model.fcnet_activation",
            "tanh",
        ),
    ],
)
def test_invalid_fields_are_named_with_the_reason(spec: dict[str, Any], path: str, words: str) -> None:
    found = problems(doc(**spec))
    assert path in found, found
    assert words in found[path]


def test_bad_metadata_name() -> None:
    d = doc()
    d["metadata"]["name"] = "Bad_Name"
    assert "DNS label" in problems(d)["metadata.name"]


def test_overrides_apply_relative_to_spec_and_parse_yaml_values() -> None:
    d = apply_overrides(
        doc(),
        [
            "config.lr=0.01",
            "resources.envRunners=0",
            "config.model.fcnet_hiddens=[32, 32]",
            "metadata.name=other",
        ],
    )
    job = parse_job(d)
    assert job.spec.config.lr == 0.01
    assert job.spec.resources.env_runners == 0
    assert job.spec.config.model.fcnet_hiddens == [32, 32]
    assert job.metadata.name == "other"
    with pytest.raises(SpecError, match="not key=value"):
        apply_overrides(doc(), ["novalue"])


def test_overrides_replace_the_spelling_the_document_has() -> None:
    """A field the models take in several spellings is set where the document already has it, whatever
    spelling the override uses; free-form mappings (envConfig, a custom algorithm's config) keep keys
    as written, since there `max_steps` and `maxSteps` may be two different things."""
    d = doc()
    d["spec"]["envConfig"] = {"max_steps": 10}
    d["spec"]["config"] = {"num_sgd_iter": 3, "lambda_": 0.9, "model": {"use_lstm": True, "useLstm": True}}
    out = apply_overrides(d, ["config.numEpochs=2", "config.lambda=0.5", "config.model.useLstm=false"])
    assert out["spec"]["config"] == {"num_sgd_iter": 2, "lambda_": 0.5, "model": {"use_lstm": False}}
    assert parse_job(out).spec.config.num_epochs == 2
    out = apply_overrides(d, ["envConfig.maxSteps=5", "resources.env_runners=0", "spec.config.newKey=1"])
    assert out["spec"]["envConfig"] == {"max_steps": 10, "maxSteps": 5}
    assert out["spec"]["resources"]["env_runners"] == 0
    assert out["spec"]["config"]["newKey"] == 1  # no field of PPO: added as written (and refused by parse)
    d["spec"]["algorithm"] = "my_pkg.algos:MyPPO"
    out = apply_overrides(d, ["config.numEpochs=2"])
    assert out["spec"]["config"]["num_sgd_iter"] == 3
    assert out["spec"]["config"]["numEpochs"] == 2


def test_malformed_yaml_reports_the_line(tmp_path: Path) -> None:
    p = tmp_path / "bad.yaml"
    p.write_text("apiVersion: kuberl.io/v1alpha1\nspec:\n  algorithm: PPO\n   env: [unclosed\n")
    with pytest.raises(SpecError, match="malformed YAML at line"):
        load_job(p)


def test_importing_the_spec_loads_neither_torch_nor_ray() -> None:
    code = "import sys, kuberl.spec; print(any(m in sys.modules for m in ('torch', 'ray')))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


def test_field_reference_is_fresh() -> None:
    from kuberl.spec.reference import render

    current = (ROOT / "docs" / "spec.md").read_text()
    assert current == render(), "docs/spec.md is stale: run `python -m kuberl.spec.reference > docs/spec.md`"


def _off_fields() -> list[tuple[str, str]]:
    """(algorithm, field) for every config field of type OffFloat: found, not listed, so a new one is covered."""
    from kuberl.spec.algorithms import CONFIG_MODELS

    return [
        (name, field)
        for name, model in CONFIG_MODELS.items()
        for field, info in model.model_fields.items()
        if any("_off_is_none" in repr(m) for m in info.metadata)
    ]


def _job(algorithm: str, field: str, value: Any) -> dict[str, Any]:
    from kuberl.spec.algorithms import CONFIG_MODELS

    offline = CONFIG_MODELS[algorithm].capabilities.offline_input  # BC, MARWIL, CQL train from data
    return doc(
        algorithm=algorithm, config={field: value}, **({"input": {"uris": ["./data"]}} if offline else {})
    )


def _set(algorithm: str, field: str, value: Any) -> Any:
    return getattr(parse_job(_job(algorithm, field, value)).spec.config, field)


def test_off_fields_take_off_spellings_and_refuse_other_words() -> None:
    fields = _off_fields()
    # gradClip of every algorithm, MARWIL's maxWeight, IMPALA's and APPO's two V-trace clips.
    assert {f for _, f in fields} == {
        "grad_clip",
        "max_weight",
        "vtrace_clip_rho_threshold",
        "vtrace_clip_pg_rho_threshold",
    }
    assert len(fields) >= 20
    for algorithm, field in fields:
        if algorithm in ("ARS", "ES"):  # they take no gradient and refuse gradClip: off alike
            null, off = ({field: v} for v in (None, "off"))
            assert problems(doc(algorithm=algorithm, config=off)) == problems(
                doc(algorithm=algorithm, config=null)
            )
            continue
        assert _set(algorithm, field, None) is None
        for spelling in (False, "off", "OFF", "none", "None"):
            assert _set(algorithm, field, spelling) is None, (algorithm, field, spelling)
        assert _set(algorithm, field, "0.25") == 0.25
    camel = "spec.config.gradClip"
    assert "neither a number nor off" in problems(doc(config={"gradClip": "of"}))[camel]
    assert "give a number, or off" in problems(doc(config={"gradClip": True}))[camel]
    assert "greater than 0" in problems(doc(config={"gradClip": 0}))[camel]
