"""The generated CRD: structural, in sync with crds/, and accepting what the models accept."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml
from pydantic import BaseModel, ValidationError
from pydantic.alias_generators import to_camel, to_snake

from kuberl.spec import parse_job
from kuberl.spec.algorithms import CONFIG_MODELS
from kuberl.spec.base import field_spellings
from kuberl.spec.crd import build_crd, config_keys, crd_yaml
from tests.fixtures.k8s import crd_validator

ROOT = Path(__file__).resolve().parents[3]
CRD_FILE = ROOT / "crds" / "kuberl.io_rltrainingjobs.yaml"


def test_crds_dir_is_not_stale() -> None:
    assert CRD_FILE.read_text() == crd_yaml(), "crds/ is stale: python -m kuberl.spec.crd > " + str(
        CRD_FILE.relative_to(ROOT)
    )


def _walk(node: Any, path: str = "") -> list[tuple[str, dict[str, Any]]]:
    out: list[tuple[str, dict[str, Any]]] = []
    if isinstance(node, dict):
        out.append((path, node))
        for key, value in node.get("properties", {}).items():
            out += _walk(value, f"{path}.{key}")
        if isinstance(node.get("items"), dict):
            out += _walk(node["items"], f"{path}[]")
        if isinstance(node.get("additionalProperties"), dict):
            out += _walk(node["additionalProperties"], f"{path}{{}}")
    return out


def test_schema_is_structural() -> None:
    version = build_crd()["spec"]["versions"][0]
    schema = version["schema"]["openAPIV3Schema"]
    for path, node in _walk(schema):
        assert not {"$ref", "oneOf", "allOf", "title"} & set(node), path
        # apiextensions/v1 refuses additionalProperties beside properties ("mutual exclusive"), and a
        # bare `false` says nothing the server does not do anyway (it prunes unknown fields).
        assert node.get("additionalProperties") is not False, path
        assert not ("properties" in node and "additionalProperties" in node), path
        assert node.get("default", "absent") is not None, f"{path}: a null default"
        if "anyOf" in node:
            assert node.get("x-kubernetes-int-or-string"), path
        elif not node.get("x-kubernetes-preserve-unknown-fields"):
            # Kubernetes exempts int-or-string and preserve-unknown-fields nodes from needing a type (a free
            # JSON value such as a spec.tune gridSearch item).
            assert "type" in node, f"{path} has no type"
        if "exclusiveMinimum" in node:
            assert node["exclusiveMinimum"] is True, path
    config = schema["properties"]["spec"]["properties"]["config"]
    assert config["x-kubernetes-preserve-unknown-fields"] is True
    assert "PPO" in config["description"]
    assert version["subresources"] == {"status": {}}
    columns = [c["name"] for c in version["additionalPrinterColumns"]]
    assert [c for c in columns if c in ("Phase", "Algorithm", "Env", "Iteration", "Return", "Age")] == [
        "Phase",
        "Algorithm",
        "Env",
        "Iteration",
        "Return",
        "Age",
    ]
    names = build_crd()["spec"]["names"]
    assert names["shortNames"] == ["rlj"]
    assert "kuberl" in names["categories"]
    assert schema["properties"]["spec"]["properties"]["seed"]["nullable"] is True


def test_example_validates_against_the_crd_and_nulls_are_allowed() -> None:
    validator = crd_validator(build_crd(), "v1alpha1")
    example = yaml.safe_load((ROOT / "examples" / "ppo-job.yaml").read_text())
    assert not list(validator.iter_errors(example))
    full = parse_job(example).to_wire()
    assert not [e.message for e in validator.iter_errors(full)]
    bad = {**example, "spec": {**example["spec"], "resources": {"envRunners": "two"}}}
    assert list(validator.iter_errors(bad))


def test_module_entry_prints_the_crd() -> None:
    out = subprocess.run(
        [sys.executable, "-m", "kuberl.spec.crd"], capture_output=True, text=True, check=True
    )
    assert yaml.safe_load(out.stdout)["kind"] == "CustomResourceDefinition"


def test_only_our_crd_is_shipped() -> None:
    # Replicas elect a leader through a Lease (leader.py) with kopf peering off, so kopf's peering CRDs
    # would be cluster-wide objects nothing reads.
    assert sorted(p.name for p in (ROOT / "crds").glob("*.yaml")) == ["kuberl.io_rltrainingjobs.yaml"]


def test_defaults_are_in_the_schema_except_where_the_operator_decides() -> None:
    spec = build_crd()["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["properties"]["spec"]
    props = spec["properties"]
    assert props["backoffLimit"]["default"] == 3
    assert props["resume"]["default"] == "auto"
    assert props["resources"]["properties"]["envRunners"]["default"] == 2
    # Absent, the image is the operator's (chart) default; a server default would hide that.
    assert "default" not in props["cluster"]["properties"]["image"]
    assert props["cluster"]["properties"]["imagePullPolicy"]["default"] == "IfNotPresent"
    status = build_crd()["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["properties"]["status"]
    assert "default" not in str(status)


def test_cel_rules_name_fields_of_the_schema() -> None:
    """Every CEL rule's fieldPath is a field of spec, so the server's error names it."""
    spec = build_crd()["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["properties"]["spec"]
    rules = spec["x-kubernetes-validations"]
    assert len(rules) >= 5
    for rule in rules:
        node = spec
        for part in rule["fieldPath"].strip(".").split("."):
            node = node["properties"][part]
        assert rule["message"]
        assert rule["reason"].startswith("FieldValue")


def _errors(model: type[BaseModel], data: dict[str, Any]) -> list[tuple[str, tuple[Any, ...]]]:
    try:
        model.model_validate(data)
    except ValidationError as exc:
        return [(e["type"], tuple(e["loc"])) for e in exc.errors()]
    return []


def _takes_key(model: type[BaseModel], key: str) -> bool:
    """Whether pydantic takes `key` as one of `model`'s fields (whatever it then says of the value): not
    an unknown field, and not refused as a whole (DDPG names TD3's keys: use TD3 for these)."""
    # A field's own default is a value it takes; for a key of no field, any value will do.
    fields = [f for f, spellings in field_spellings(model).items() if key in spellings]
    value = model.model_fields[fields[0]].get_default(call_default_factory=True) if fields else None
    errors = _errors(model, {key: value})
    return ("extra_forbidden", (key,)) not in errors and not any(
        loc == () and (kind, loc) not in _errors(model, {}) for kind, loc in errors
    )


def _candidate_keys() -> set[str]:
    """Every key any built-in config knows, in every spelling pydantic might take, and near misses."""
    out: set[str] = set()
    for keys in config_keys().values():
        out.update(keys)
    for model in CONFIG_MODELS.values():
        for name in model.model_fields:
            out.update({name, to_camel(name), to_snake(to_camel(name)), name.upper(), name + "s"})
    return out


@pytest.mark.parametrize("algorithm", sorted(CONFIG_MODELS))
def test_crd_config_keys_are_exactly_what_the_model_takes(algorithm: str) -> None:
    """Parity: the keys the CRD lets through for a built-in algorithm are the keys its pydantic model
    takes (camelCase, snake_case and every alias), no more and no fewer, so the two cannot drift."""
    model = CONFIG_MODELS[algorithm]
    crd_keys = set(config_keys()[algorithm])
    taken = {k for k in _candidate_keys() if _takes_key(model, k)}
    assert crd_keys == taken
    # Both spellings of every field: snake_case (validate_by_name) and the alias.
    for name in set(model.model_fields) - set(model.refused_fields):
        assert {name, to_camel(name).rstrip("_")} <= crd_keys, name


def test_crd_declares_every_config_key_and_closes_each_algorithm() -> None:
    spec = build_crd()["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["properties"]["spec"]
    config = spec["properties"]["config"]
    declared = {k for keys in config_keys().values() for k in keys}
    assert set(config["properties"]) == declared
    # Untyped: one key takes different values in different algorithms; the operator checks values.
    assert all(
        node == {"x-kubernetes-preserve-unknown-fields": True, "nullable": True}
        for node in config["properties"].values()
    )
    (rule,) = [r for r in spec["x-kubernetes-validations"] if r["fieldPath"] == ".config"]
    for algorithm, keys in config_keys().items():
        assert f"'{algorithm}': [" + ", ".join(f"'{k}'" for k in keys) + "]" in rule["rule"]
    # A custom algorithm (module:Class) is not among the closed ones: its config stays open.
    assert "self.algorithm.upperAscii() in ['A2C'" in rule["rule"]
