"""Bad input never crashes the operator: generated invalid specs through validation and the create
handler always end in Failed + Valid=False naming a field, a PermanentError, and no children."""

from __future__ import annotations

import asyncio
import copy
import sys
from pathlib import Path
from typing import Any

import kopf
import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from kuberl.spec import SpecError, parse_job
from kuberl_operator import reconcile

sys.path.insert(0, str(Path(__file__).parent))
from fakes import FakeApi, make_context

VALID: dict[str, Any] = {
    "apiVersion": "kuberl.io/v1alpha1",
    "kind": "RLTrainingJob",
    "metadata": {"name": "job", "namespace": "ns", "uid": "u-1", "generation": 1},
    "spec": {
        "algorithm": "PPO",
        "env": "CartPole-v1",
        "config": {"lr": 0.001, "trainBatchSize": 512, "minibatchSize": 64},
        "resources": {"envRunners": 2, "gpusPerLearner": 0},
        "checkpoint": {"uri": "s3://bucket/prefix", "credentials": {"secretName": "s"}},
        "cluster": {"head": {"cpu": "2"}, "tolerations": [{"key": "k"}]},
        "stop": {"iterations": 10},
    },
}

# Paths into spec and values each is known to reject.
BAD_VALUES: list[tuple[tuple[str, ...], list[Any]]] = [
    (("algorithm",), ["NOPE", 3, None, "", []]),
    (("env",), ["not an env!", 5, None, "::", {}]),
    (("config", "lr"), [0, -1, "fast", None, []]),
    (("config", "gamma"), [1.5, -0.1, "x"]),
    (("config", "minibatchSize"), [100000, 0, "x"]),
    (("config", "model", "fcnetHiddens"), [[0], "64", [1.5, "x"]]),
    (("config", "unknownKnob"), [1, "x"]),
    (("resources", "envRunners"), [-1, "two", 1.5]),
    (("resources", "gpusPerLearner"), [-1, "x"]),
    (("checkpoint", "uri"), ["ftp://x/y", "s3://B_A_D", 3]),
    (("checkpoint", "credentials"), [{"secretName": ""}, {"nope": 1}, "s"]),
    (("cluster", "head", "cpu"), ["lots", True, [], -1.5j if False else "1.2.3"]),
    # Quantities Kubernetes parses but a Ray pod cannot use, or that it refuses (#16).
    (("cluster", "cpuWorkers", "cpu"), ["1Gi", "-2", "0", "...", "1K", "1e9"]),
    (("cluster", "cpuWorkers", "memory"), ["512m", "0", "-1Gi", "lots"]),
    (("cluster", "rayVersion"), ["latest", 2]),
    (("cluster", "tolerations"), [[{"operator": "Maybe"}], "x", [3]]),
    (("cluster", "imagePullPolicy"), ["Sometimes"]),
    (("stop", "iterations"), [0, -3, "x"]),
    (("resume",), ["sometimes", 3]),
    (("backoffLimit",), [-1, "x"]),
    (("metrics", "port"), [70000, -1]),
    (("suspend",), ["perhaps", [1]]),
    (("typoField",), [1]),
]

json_values = st.recursive(
    st.none() | st.booleans() | st.integers(-5, 10**6) | st.floats(allow_nan=False) | st.text(max_size=8),
    lambda children: (
        st.lists(children, max_size=3) | st.dictionaries(st.text(max_size=6), children, max_size=3)
    ),
    max_leaves=8,
)


def _set(doc: dict[str, Any], path: tuple[str, ...], value: Any) -> None:
    node = doc["spec"]
    for key in path[:-1]:
        node = node.setdefault(key, {})
    node[path[-1]] = value


@st.composite
def invalid_documents(draw: st.DrawFn) -> dict[str, Any]:
    doc = copy.deepcopy(VALID)
    kind = draw(st.sampled_from(["known", "known", "random-field", "random-spec", "name"]))
    if kind == "known":
        for _ in range(draw(st.integers(1, 3))):
            path, values = draw(st.sampled_from(BAD_VALUES))
            _set(doc, path, draw(st.sampled_from(values)))
    elif kind == "random-field":
        path, _ = draw(st.sampled_from(BAD_VALUES))
        _set(doc, path, draw(json_values))
    elif kind == "random-spec":
        doc["spec"] = draw(st.dictionaries(st.text(max_size=10), json_values, max_size=4) | json_values)
    else:
        doc["metadata"]["name"] = draw(st.sampled_from(["UPPER", "a" * 41, "-x", "under_score", ""]))
    return doc


def _run_create(doc: dict[str, Any]) -> tuple[FakeApi, list[tuple[str, str, str]]]:
    api, events = FakeApi(), []
    ctx = make_context(api, events)
    with pytest.raises(kopf.PermanentError):
        asyncio.run(reconcile.create(ctx, doc))
    return api, events


@settings(
    max_examples=1200,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much],
)
@given(invalid_documents())
def test_invalid_specs_fail_with_a_field_path(doc: dict[str, Any]) -> None:
    try:
        parse_job(doc)
    except SpecError as err:
        problems = err.problems
    else:
        assume(False)  # a mutation that happened to be valid: draw another, so 1,200 invalid ones run
    assert problems
    assert all(path for path, _ in problems), problems
    api, events = _run_create(doc)
    assert not [c for c in api.calls if c[0] == "create"], "no children for an invalid spec"
    status = api.statuses[-1]
    assert status["phase"] == "Failed"
    valid = next(c for c in status["conditions"] if c["type"] == "Valid")
    assert valid["status"] == "False"
    assert valid["reason"] == "InvalidSpec"
    assert any(path in valid["message"] for path, _ in problems)
    assert valid["message"].split(":", 1)[0].startswith(("spec", "metadata"))
    assert events
    assert events[-1][1] == "InvalidSpec"


@pytest.mark.parametrize("cpu", ["1Gi", "-2", "0"])
def test_bad_cpu_quantity_is_a_condition_not_a_crash(cpu: str) -> None:
    # These used to pass validation and raise in the builders: Pending forever, no condition (#16).
    doc = copy.deepcopy(VALID)
    doc["spec"]["cluster"]["cpuWorkers"] = {"cpu": cpu}
    doc["spec"]["tune"] = {"metric": "episode_return_mean", "numSamples": 2}
    api, _ = _run_create(doc)
    assert not [c for c in api.calls if c[0] == "create"]
    message = next(c for c in api.statuses[-1]["conditions"] if c["type"] == "Valid")["message"]
    assert message.startswith("spec.cluster.cpuWorkers.cpu:"), message


def test_bad_namespace_is_refused() -> None:
    doc = copy.deepcopy(VALID)
    doc["metadata"]["namespace"] = "../../etc"
    with pytest.raises(SpecError) as info:
        parse_job(doc)
    assert [p for p, _ in info.value.problems] == ["metadata.namespace"]


def test_known_example_names_the_field() -> None:
    doc = copy.deepcopy(VALID)
    doc["spec"]["resources"]["envRunners"] = -1
    api, _ = _run_create(doc)
    message = next(c for c in api.statuses[-1]["conditions"] if c["type"] == "Valid")["message"]
    assert message.startswith("spec.resources.envRunners:")
