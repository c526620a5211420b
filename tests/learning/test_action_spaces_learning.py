"""The policy-gradient family learns tasks that need MultiDiscrete, MultiBinary, Dict and Tuple actions
(kuberl.envs ButtonsEnv, examples/ppo-multidiscrete.yaml): PPO reaches a return threshold within a
bounded budget over several seeds; A2C, PG, IMPALA, APPO and A3C train on them and beat random play.
All sample in the driver (no Ray): seconds each."""

from __future__ import annotations

from pathlib import Path

import pytest

from kuberl.build import build_algorithm
from tests.learning.common import SEED, example, train_until_return

# Random play earns about 2.7 of the best 8 per episode (dials: 8/3; Dict/Tuple: 8/6 for the dials plus
# about 1.3 for a random gain); thresholds are well above it and below what a trained policy gets.
THRESHOLDS = {"multi_discrete": 7.0, "multi_binary": 7.0, "dict": 6.0, "tuple": 6.0}
BUDGET = 40_000
# Three seeds for MultiDiscrete (what external simulators speak), fewer for the others to stay CI-sized;
# Tuple is Dict's task in another structure.
CASES = [
    ("multi_discrete", SEED),
    ("multi_discrete", SEED + 1),
    ("multi_discrete", SEED + 2),
    ("multi_binary", SEED),
    ("multi_binary", SEED + 1),
    ("dict", SEED),
    ("tuple", SEED + 1),
]


@pytest.mark.learning
@pytest.mark.parametrize(("kind", "seed"), CASES)
def test_ppo_learns_each_action_space_kind(tmp_path: Path, kind: str, seed: int) -> None:
    doc = example("ppo-multidiscrete.yaml", tmp_path, f"envConfig.action={kind}", f"seed={seed}")
    out = train_until_return(doc, threshold=THRESHOLDS[kind], budget=BUDGET)
    assert out.best >= THRESHOLDS[kind], out.describe()


# The rest of the family, each on one kind (every kind is the same code path in core: the distribution
# and the runner's conversion), with a budget that fits CI: the deterministic policy beats random play.
OTHERS = [
    ("A2C", "dict"),
    ("PG", "multi_binary"),
    ("IMPALA", "multi_discrete"),
    ("APPO", "tuple"),
    ("A3C", "dict"),
]


@pytest.mark.learning
@pytest.mark.parametrize(("algorithm", "kind"), OTHERS)
def test_the_family_trains_on_the_new_kinds(tmp_path: Path, algorithm: str, kind: str) -> None:
    doc = example(
        "ppo-multidiscrete.yaml", tmp_path, f"algorithm={algorithm}", f"envConfig.action={kind}", "config={}"
    )
    doc["spec"]["config"] = {"lr": 0.003, "gamma": 0.9}
    algo = build_algorithm(doc)
    try:
        while algo.timesteps < 10_000:
            algo.train()
        result = algo.evaluate(10, explore=False)
    finally:
        algo.stop()
    assert result["episode_return_mean"] >= 4.5, result


@pytest.mark.learning
def test_multi_agent_ppo_learns_a_multidiscrete_task(tmp_path: Path) -> None:
    """Two agents set their own dials (tests.ma_envs TeamButtons): the env return sums both, 16 at best,
    about 5.3 for random play."""
    doc = example(
        "ma-coop-ppo.yaml",
        tmp_path,
        "env=tests.ma_envs:make_team_buttons",
        "envConfig={action: multi_discrete}",
        "resources.envRunners=0",
        "config.num_epochs=4",
        "config.train_batch_size=1024",
        "config.minibatch_size=256",
    )
    out = train_until_return(doc, threshold=12.0, budget=12_000)
    assert out.best >= 12.0, out.describe()


@pytest.mark.parametrize("kind", ["dict", "multi_binary"])
def test_multi_agent_ppo_trains_on_structured_actions(tmp_path: Path, kind: str) -> None:
    # TeamButtons refuses an action outside its agent's space, so a wrong structure fails the run.
    doc = example(
        "ma-coop-ppo.yaml",
        tmp_path,
        "env=tests.ma_envs:make_team_buttons",
        f"envConfig={{action: {kind}}}",
        "resources.envRunners=0",
        "config.num_epochs=1",
        "config.train_batch_size=512",
        "config.minibatch_size=256",
    )
    algo = build_algorithm(doc)
    try:
        result = algo.train()
    finally:
        algo.stop()
    assert result["episode_return_mean"] is not None
