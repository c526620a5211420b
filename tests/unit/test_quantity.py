"""CPU and memory quantities are parsed as Kubernetes parses them and refused, with the field and the
reason, when a Ray pod could not use them (#16: "1Gi", "-2", "1e3" and "0" used to crash the builders)."""

from __future__ import annotations

from decimal import Decimal, localcontext
from typing import Any

import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st
from kubernetes.utils.quantity import parse_quantity as client_parse_quantity

from kuberl.spec import SpecError, parse_job
from kuberl.spec.quantity import QUANTITY_PATTERN, parse_quantity

# Values from apimachinery's quantity_test.go (TestQuantityParse).
VALID = {
    "0": Decimal(0),
    "1": Decimal(1),
    "500m": Decimal("0.5"),
    "1.5": Decimal("1.5"),
    ".5": Decimal("0.5"),
    "1.": Decimal(1),
    "+2": Decimal(2),
    "-2": Decimal(-2),
    "4Gi": Decimal(4 * 1024**3),
    "1Ki": Decimal(1024),
    "1e3": Decimal(1000),
    "1E-3": Decimal("0.001"),
    "1e+3": Decimal(1000),
    "2E": Decimal(2 * 10**18),
    "7n": Decimal("7e-9"),
    "3u": Decimal("3e-6"),
    "1k": Decimal(1000),
    "100M": Decimal(10**8),
}
INVALID = [
    "",
    " 1",
    "1 ",
    "1K",
    "1ki",
    "1e",
    "..",
    ".",
    "1.2.3",
    "NaN",
    "Infinity",
    "1_0",
    "1Gb",
    "e3",
    "0x10",
    "m",
]


@pytest.mark.parametrize(("text", "value"), VALID.items())
def test_parses_what_kubernetes_accepts(text: str, value: Decimal) -> None:
    assert parse_quantity(text) == value


@pytest.mark.parametrize("text", INVALID)
def test_refuses_what_kubernetes_refuses(text: str) -> None:
    with pytest.raises(ValueError, match="not a Kubernetes quantity"):
        parse_quantity(text)


@settings(max_examples=400, deadline=None)
@example(".10000000000000000000000000001E0")  # 29 significant digits: exact, not rounded to 28
@given(st.from_regex(QUANTITY_PATTERN, fullmatch=True).filter(lambda t: len(t) <= 64 and "\n" not in t))
def test_agrees_with_the_kubernetes_client(text: str) -> None:
    # The Python client is looser (it also takes "NaN", "1_0"), but on every string of the grammar the
    # values must agree; the client has no exponent form, so those are compared through Decimal.
    if "e" in text.lower() and not text.endswith(("E", "Ei")):
        mantissa, exponent = text.lower().split("e")
        if abs(int(exponent)) > 100:
            with pytest.raises(ValueError, match="out of range"):
                parse_quantity(text)
            return
        # scaleb rounds to the context's precision (28 digits by default); kuberl is exact, and the
        # grammar's 64 characters fit in 200 digits.
        with localcontext(prec=200):
            expected = Decimal(mantissa).scaleb(int(exponent))
        assert parse_quantity(text) == expected
    else:
        # The client rounds to Decimal's default 28 digits; kuberl is exact.
        ours, theirs = parse_quantity(text), client_parse_quantity(text)
        assert abs(ours - theirs) <= abs(theirs) * Decimal("1e-26"), (ours, theirs)


def _job(cluster: dict[str, Any], **spec: Any) -> dict[str, Any]:
    return {
        "apiVersion": "kuberl.io/v1alpha1",
        "kind": "RLTrainingJob",
        "metadata": {"name": "q"},
        "spec": {"algorithm": "PPO", "env": "CartPole-v1", "cluster": cluster, **spec},
    }


def _problems(doc: dict[str, Any]) -> dict[str, str]:
    with pytest.raises(SpecError) as info:
        parse_job(doc)
    return dict(info.value.problems)


@pytest.mark.parametrize(
    ("cluster", "path", "words"),
    [
        ({"cpuWorkers": {"cpu": "1Gi"}}, "spec.cluster.cpuWorkers.cpu", "in bytes"),
        ({"cpuWorkers": {"cpu": "-2"}}, "spec.cluster.cpuWorkers.cpu", "at least 1m"),
        ({"cpuWorkers": {"cpu": "0"}}, "spec.cluster.cpuWorkers.cpu", "at least 1m"),
        ({"cpuWorkers": {"cpu": "..."}}, "spec.cluster.cpuWorkers.cpu", "not a Kubernetes quantity"),
        ({"cpuWorkers": {"cpu": "1K"}}, "spec.cluster.cpuWorkers.cpu", "not a Kubernetes quantity"),
        ({"head": {"cpu": "1e9"}}, "spec.cluster.head.cpu", "more than"),
        ({"head": {"cpu": True}}, "spec.cluster.head.cpu", "number or a string"),
        ({"head": {"memory": "512m"}}, "spec.cluster.head.memory", "milli-bytes"),
        ({"head": {"memory": "0"}}, "spec.cluster.head.memory", "at least one byte"),
        ({"cpuWorkers": {"memory": "-1Gi"}}, "spec.cluster.cpuWorkers.memory", "at least one byte"),
        ({"learners": {"cpu": "2Mi"}}, "spec.cluster.learners.cpu", "in bytes"),
        ({"head": {"cpu": "9" * 5_000_000}}, "spec.cluster.head.cpu", "not a Kubernetes quantity"),
    ],
)
def test_bad_quantities_name_the_field_and_the_reason(cluster: dict[str, Any], path: str, words: str) -> None:
    spec: dict[str, Any] = {"resources": {"learners": 2}} if "learners" in cluster else {}
    problems = _problems(_job(cluster, **spec))
    assert path in problems, problems
    assert words in problems[path]
    assert len(problems[path]) < 200  # the 5 MB value is not echoed back


def test_quantities_kubernetes_accepts_are_kept_as_written() -> None:
    job = parse_job(_job({"head": {"cpu": "1e3", "memory": "1e9"}, "cpuWorkers": {"cpu": 0.5}}))
    assert (job.spec.cluster.head.cpu, job.spec.cluster.head.memory) == ("1e3", "1e9")
    assert job.spec.cluster.cpu_workers.cpu == "0.5"


@pytest.mark.parametrize("namespace", ["../../etc", "UPPER", "a" * 64, "-x", "has space", "x" * 1_000_000])
def test_bad_namespaces_are_refused(namespace: str) -> None:
    doc = _job({})
    doc["metadata"]["namespace"] = namespace
    problems = _problems(doc)
    assert "metadata.namespace" in problems, problems
    assert len(problems["metadata.namespace"]) < 200
