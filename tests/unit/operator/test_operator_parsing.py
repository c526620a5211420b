"""Each job generation is parsed once (a large spec no longer costs a parse per pass)."""

from __future__ import annotations

import copy
from typing import Any

import pytest

from kuberl.spec import SpecError
from kuberl_operator.parsing import ParseCache

BODY: dict[str, Any] = {
    "metadata": {"name": "j", "namespace": "ns", "uid": "u-1", "generation": 1},
    "spec": {"algorithm": "PPO", "env": "CartPole-v1"},
    "status": {"phase": "Running", "attempt": 0},
}


def test_one_parse_per_generation_and_status_always_current() -> None:
    cache = ParseCache()
    first = cache.parse(BODY)
    body = copy.deepcopy(BODY)
    body["status"]["phase"] = "Suspended"
    again = cache.parse(body)
    assert (cache.misses, cache.hits) == (1, 1)
    assert again.spec is first.spec
    assert (first.status.phase, again.status.phase) == ("Running", "Suspended")  # type: ignore[union-attr]
    body["metadata"]["generation"] = 2
    body["spec"]["envConfig"] = {"x": 1}
    assert cache.parse(body).spec.env_config == {"x": 1}
    body["metadata"]["labels"] = {"kueue.x-k8s.io/queue-name": "q"}  # labels reach the children
    cache.parse(body)
    assert cache.misses == 3


def test_invalid_specs_are_cached_too_and_raise_a_fresh_error_each_time() -> None:
    cache = ParseCache()
    bad = copy.deepcopy(BODY)
    bad["spec"]["resources"] = {"envRunners": -1}
    errors = []
    for _ in range(3):
        with pytest.raises(SpecError) as info:
            cache.parse(bad)
        errors.append(info.value)
    assert cache.misses == 1
    assert errors[0] is not errors[1]
    assert errors[2].first_path == "spec.resources.envRunners"


def test_bounded() -> None:
    cache = ParseCache(size=3)
    for i in range(10):
        body = copy.deepcopy(BODY)
        body["metadata"]["uid"] = f"u-{i}"
        cache.parse(body)
    assert len(cache._entries) == 3
    cache.forget("u-9")
    assert len(cache._entries) == 2
