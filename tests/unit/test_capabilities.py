"""Capability flags (kuberl.spec.capabilities): every algorithm declares its features on its config
class, and validation accepts a feature exactly for the algorithms whose flag is on."""

from __future__ import annotations

from typing import Any

import gymnasium as gym
import numpy as np
import pytest

from kuberl.algorithms.base import check_action_space
from kuberl.spec import ALGORITHMS, SpecError, parse_job
from kuberl.spec.algorithms import capabilities
from kuberl.spec.algorithms.base import supporting
from kuberl.spec.capabilities import ALL_SPACES, FEATURES, Capabilities

CAPS = capabilities()
MA_ENV = "kuberl.multi_agent.envs:coop_match"


def job(algorithm: str, **spec: Any) -> dict[str, Any]:
    caps = CAPS[algorithm]
    env = "CartPole-v1" if "discrete" in caps.action_spaces else "Pendulum-v1"
    base: dict[str, Any] = {"algorithm": algorithm, "env": env}
    if caps.offline_input:
        base["input"] = {"uris": ["/data/x"]}
    return {"metadata": {"name": "caps"}, "spec": {**base, **spec}}


def refused(document: dict[str, Any]) -> dict[str, str]:
    try:
        parse_job(document)
    except SpecError as err:
        return dict(err.problems)
    return {}


def test_every_algorithm_declares_its_capabilities() -> None:
    assert set(CAPS) == set(ALGORITHMS)
    for name, caps in CAPS.items():
        assert isinstance(caps, Capabilities), name
        assert caps.action_spaces, f"{name} trains no action space"


def test_supporting_lists_the_algorithms_with_a_flag_on() -> None:
    assert supporting("external") == ["A2C", "PG", "PPO"]
    assert set(supporting("recurrent")) == {"APPO", "IMPALA", "PPO", "QMIX", "VDN"}
    assert set(FEATURES) >= {"external", "multi_agent", "recurrent", "offline_input", "multi_learner"}


@pytest.mark.parametrize("algorithm", ALGORITHMS)
def test_multi_agent_is_accepted_iff_the_flag_is_on(algorithm: str) -> None:
    doc = job(algorithm, env=MA_ENV, multiAgent={})
    doc["spec"].pop("input", None)
    problems = refused(doc)
    assert ("spec.multiAgent" not in problems) == CAPS[algorithm].multi_agent, problems


@pytest.mark.parametrize("algorithm", ALGORITHMS)
def test_external_is_accepted_iff_the_flag_is_on(algorithm: str) -> None:
    problems = refused(job(algorithm, external={"enabled": True, "insecure": True}))
    assert ("spec.external.enabled" not in problems) == CAPS[algorithm].external, problems


@pytest.mark.parametrize("algorithm", ALGORITHMS)
def test_recurrent_models_are_accepted_iff_the_flag_is_on(algorithm: str) -> None:
    problems = refused(job(algorithm, config={"model": {"useLstm": True}}))
    assert (problems == {}) == CAPS[algorithm].recurrent, problems


@pytest.mark.parametrize("algorithm", ALGORITHMS)
def test_output_is_accepted_iff_the_flag_is_on(algorithm: str) -> None:
    problems = refused(job(algorithm, output={"uri": "/data/out"}))
    assert ("spec.output" not in problems) == CAPS[algorithm].offline_output, problems


@pytest.mark.parametrize("algorithm", ALGORITHMS)
def test_input_is_required_iff_the_flag_is_on(algorithm: str) -> None:
    doc = job(algorithm)
    doc["spec"]["input"] = {"uris": ["/data/x"]}
    assert ("spec.input" not in refused(doc)) == CAPS[algorithm].offline_input


@pytest.mark.parametrize("algorithm", ALGORITHMS)
@pytest.mark.parametrize(
    ("flag", "field", "value"),
    [
        ("observation_filter", "observationFilter", "MeanStdFilter"),
        ("reward_normalization", "normalizeRewards", True),
    ],
)
def test_config_features_are_accepted_iff_the_flag_is_on(
    algorithm: str, flag: str, field: str, value: Any
) -> None:
    """One rule each (kuberl.spec.combinations.capability_problems), naming the field and the algorithms
    that take it."""
    problems = refused(job(algorithm, config={field: value}))
    if getattr(CAPS[algorithm], flag):
        assert problems == {}, problems
    else:
        assert list(problems) == [f"spec.config.{field}"], problems
        assert ", ".join(supporting(flag)) in problems[f"spec.config.{field}"]


@pytest.mark.parametrize("algorithm", ALGORITHMS)
def test_data_parallel_learners_are_accepted_iff_the_flag_is_on(algorithm: str) -> None:
    problems = refused(job(algorithm, resources={"learners": 2}))
    assert ("spec.resources.learners" not in problems) == CAPS[algorithm].multi_learner, problems


@pytest.mark.parametrize("algorithm", ALGORITHMS)
def test_the_action_space_check_follows_the_flag(algorithm: str) -> None:
    spaces = {
        "discrete": gym.spaces.Discrete(2),
        "box": gym.spaces.Box(-1.0, 1.0, (1,), np.float32),
        "multi_discrete": gym.spaces.MultiDiscrete([2, 3]),
        "multi_binary": gym.spaces.MultiBinary(3),
        "tuple": gym.spaces.Tuple((gym.spaces.Discrete(2), gym.spaces.Box(-1.0, 1.0, (1,), np.float32))),
        "dict": gym.spaces.Dict({"a": gym.spaces.Discrete(2), "b": gym.spaces.MultiBinary(2)}),
    }
    assert set(spaces) == set(ALL_SPACES)
    for kind, space in spaces.items():
        if kind in CAPS[algorithm].action_spaces:
            check_action_space(algorithm, CAPS[algorithm].action_spaces, space)
        else:
            with pytest.raises(SpecError) as err:
                check_action_space(algorithm, CAPS[algorithm].action_spaces, space)
            assert err.value.first_path == "spec.env"
            assert algorithm in str(err.value)
