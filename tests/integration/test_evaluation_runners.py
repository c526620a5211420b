"""evaluation.numEnvRunners (RLlib's evaluation_num_env_runners): evaluation on Ray actors of its own,
sent the weights at each evaluation, each playing its share of the episodes; with parallelToTraining
while the next iterations train.

What is shown: a `kuberl run` (CLI, embedded Ray) whose evaluation statistics come from two other
processes than the driver; the statistics are exactly those of the greedy policy with the weights of
the iteration the result names, replayed in this process (so they are not the training weights of a
later iteration, and not sampled actions); and the spec errors of combinations that cannot run."""

from __future__ import annotations

import copy
import json
import subprocess
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
import yaml

from kuberl import build_algorithm
from kuberl.algorithms.base import Algorithm
from kuberl.core.evaluation import EpisodeStats, act_with, evaluation_seed, play, shares
from kuberl.core.models import load_numpy_weights
from tests.cli import cli_command, cli_env, kuberl

ROOT = Path(__file__).resolve().parents[2]
pytestmark = pytest.mark.integration

SMALL = ["--set", "config.train_batch_size=256", "--set", "config.minibatch_size=128",
         "--set", "config.num_epochs=1", "--set", "metrics.port=0", "--no-progress"]  # fmt: skip


def test_cli_run_evaluates_on_two_actors_in_parallel(tmp_path: Path) -> None:
    markers = tmp_path / "markers"
    markers.mkdir()
    proc = subprocess.Popen(
        cli_command(
            "run", str(ROOT / "examples" / "ppo-job.yaml"), *SMALL,
            "--set", "env=tests.envs:make_marked_cartpole",
            "--set", f"envConfig.markers={markers}",
            "--set", "resources.envRunners=1", "--set", "resources.envsPerRunner=2",
            "--set", "resources.cpusPerRunner=0.5",
            "--set", "evaluation.interval=1", "--set", "evaluation.episodes=4",
            "--set", "evaluation.numEnvRunners=2", "--set", "evaluation.parallelToTraining=true",
            "--set", "evaluation.envConfig.role=eval",
            "--set", "stop.iterations=4", "--set", "stop.episodeReturnMean=null",
            "--run-dir", "run",
        ),
        cwd=tmp_path, env=cli_env(unset=("RAY_ADDRESS", "KUBERNETES_SERVICE_HOST")),
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    _out, err = proc.communicate(timeout=600)
    assert proc.returncode == 0, err[-3000:]

    results = [json.loads(line) for line in (tmp_path / "run" / "result.json").read_text().splitlines()]
    evaluations = [(r["training_iteration"], r["evaluation"]) for r in results if "evaluation" in r]
    assert evaluations, "no evaluation finished during the run"
    for iteration, ev in evaluations:
        assert ev["num_env_runners"] == 2
        assert ev["episodes"] == 4
        assert ev["episode_return_mean"] is not None
        # Launched at the end of an earlier iteration, reported by a later one (parallel to training).
        assert ev["weights_iteration"] < iteration
    # The evaluation episodes were played by two processes, neither of them the driver: the actors.
    pids = {p.name.split("-")[1] for p in markers.glob("open-*")}
    assert len(pids) == 2, pids
    assert str(proc.pid) not in pids
    # The training envs never carried the evaluation's envConfig: only evaluation envs left markers,
    # and each evaluation closed every env it opened, except the one still under way when training
    # stopped (its actors end with the run, as RLlib's do): at most that evaluation's envs, i.e. each
    # actor's share of evaluation.episodes (2 of 4, one sub-env per episode).
    opened = {p.name.removeprefix("open-") for p in markers.glob("open-*")}
    closed = {p.name.removeprefix("closed-") for p in markers.glob("closed-*")}
    assert closed <= opened
    left_open = sorted(opened - closed)
    per_actor = [sum(1 for i in left_open if i.startswith(f"{pid}-")) for pid in pids]
    assert max(per_actor) <= 2, left_open


def _job(tmp_path: Path, **evaluation: Any) -> dict[str, Any]:
    doc = yaml.safe_load((ROOT / "examples" / "ppo-job.yaml").read_text())
    doc["spec"].update(
        {"runDir": str(tmp_path / "run"), "seed": 3,
         "resources": {"envRunners": 1, "envsPerRunner": 2, "cpusPerRunner": 0.5, "localMode": "actors"},
         "evaluation": {"interval": 1, "episodes": 5, "numEnvRunners": 2, **evaluation}}
    )  # fmt: skip
    # lr pinned (not the example's): with seed 3 and lr 0.003, iteration 1's greedy policy plays
    # differently from all-zero weights, which the weights test needs to tell them apart.
    doc["spec"]["config"].update(
        {"train_batch_size": 128, "minibatch_size": 64, "num_epochs": 1, "lr": 0.003}
    )
    return doc


def _replayed(algo: Algorithm, weights: dict[str, np.ndarray], episodes: int) -> dict[str, Any]:
    """The evaluation the actors should have played: the greedy inference policy with `weights`, each
    actor's share on its own seeded envs, played here in the test's process."""
    policy = copy.deepcopy(algo.inference_policy())
    load_numpy_weights(policy.module, weights)
    stats = EpisodeStats()
    for index, share in enumerate(shares(episodes, 2), start=1):
        act, initial_state = act_with(
            policy, algo.obs_space, algo.action_space, algo.obs_filter, explore=False,
            generator=torch.Generator(),
        )  # fmt: skip
        env_config = {**algo.spec.env_config, **algo.spec.evaluation.env_config}
        stats.merge(
            play(algo.spec.env, env_config, act=act, initial_state=initial_state, n=share,
                 seed=evaluation_seed(algo.spec.seed), worker_index=index)
        )  # fmt: skip
    return {**stats.summary(), "num_env_runners": 2}


def _zero_weights(weights: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    return {k: np.zeros_like(v) for k, v in weights.items()}


def test_parallel_evaluation_plays_the_weights_it_names(tmp_path: Path, ray_session: None) -> None:
    algo = build_algorithm(_job(tmp_path, parallelToTraining=True))
    assert isinstance(algo, Algorithm)
    try:
        assert algo.evaluation_runners is not None
        assert len(algo.evaluation_runners.actors) == 2
        first = algo.train()  # launches the evaluation with iteration 1's weights
        assert "evaluation" not in first
        launched = {k: v.copy() for k, v in algo.get_weights().items()}
        # Other weights from now on (all zeros: CartPole's greedy action is then always 0): the
        # evaluation already under way must not see them.
        algo.set_weights(_zero_weights(launched))
        assert algo.background_evaluation is not None
        algo.background_evaluation.wait(timeout=300)
        ev = algo.train()["evaluation"]
        assert ev.pop("weights_iteration") == 1
        expected = _replayed(algo, launched, 5)
        assert expected != _replayed(algo, _zero_weights(launched), 5), "the check could not tell them apart"
        assert ev == expected
    finally:
        algo.stop()


def test_sequential_evaluation_on_actors_is_greedy_with_current_weights(
    tmp_path: Path, ray_session: None
) -> None:
    algo = build_algorithm(_job(tmp_path))
    assert isinstance(algo, Algorithm)
    try:
        ev = algo.train()["evaluation"]  # in the result of the iteration that is due, as without actors
        assert "weights_iteration" not in ev
        assert ev == _replayed(algo, algo.get_weights(), 5)
        # A sampled (explore: true) evaluation of the same weights is another one.
        assert algo.evaluate(explore=True) != ev
    finally:
        algo.stop()


@pytest.mark.parametrize(
    ("sets", "message"),
    [
        (["evaluation.numEnvRunners=-1"], "spec.evaluation.numEnvRunners: "),
        (["evaluation.numEnvRunners=2", "resources.envRunners=0"],
         "spec.evaluation.numEnvRunners: 2 evaluation actors need Ray, but envRunners: 0 runs without it"),
        (["evaluation.numEnvRunners=1", "resources.localMode=driver"],
         "spec.evaluation.numEnvRunners: 1 evaluation actors need Ray, but localMode: driver"),
        (["evaluation.numEnvRunners=1", "external.enabled=true"],
         "spec.evaluation.numEnvRunners: external simulators bring their own envs"),
    ],
)  # fmt: skip
def test_combinations_that_cannot_run_exit_2_naming_the_field(
    tmp_path: Path, sets: list[str], message: str
) -> None:
    args = [a for s in sets for a in ("--set", s)]
    res = kuberl("run", str(ROOT / "examples" / "ppo-job.yaml"), *args, "--run-dir", "run", cwd=tmp_path)
    assert res.returncode == 2, res.stderr
    assert message in res.stderr
    assert "Traceback" not in res.stderr
    assert not (tmp_path / "run").exists()


def test_multi_agent_refuses_evaluation_actors(tmp_path: Path) -> None:
    res = kuberl(
        "run", str(ROOT / "examples" / "ma-coop-ppo.yaml"), "--set", "evaluation.numEnvRunners=1",
        "--run-dir", "run", cwd=tmp_path,
    )  # fmt: skip
    assert res.returncode == 2, res.stderr
    assert "spec.evaluation.numEnvRunners: multiAgent evaluation runs in the driver" in res.stderr
    assert not (tmp_path / "run").exists()
