"""PPO with the CNN encoder learns from pixels (with Gymnasium's frame stacking), and from Dict observations."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pytest

from kuberl.build import build_algorithm
from tests.fixtures.jobs import job_doc

SEED = int(os.environ.get("KUBERL_TEST_SEED", "0"))


def job(env: str, env_config: dict[str, Any], tmp_path: Path, **config: Any) -> dict[str, Any]:
    ppo = {"train_batch_size": 1024, "minibatch_size": 256, "num_epochs": 4, "lr": 0.001}
    return job_doc(
        "PPO",
        env,
        seed=SEED,
        name="models",
        run_dir=tmp_path,
        config={**ppo, **config},
        envs_per_runner=16,
        envConfig=env_config,
    )


def train_until(doc: dict[str, Any], threshold: float, max_steps: int) -> float:
    algo = build_algorithm(doc)
    try:
        ret = float("-inf")
        while algo.timesteps < max_steps and ret < threshold:
            ret = algo.train()["episode_return_mean"] or float("-inf")
        return algo.evaluate(20)["episode_return_mean"]
    finally:
        algo.stop()


@pytest.mark.learning
def test_cnn_reads_pixels_through_frame_stacking(tmp_path: Path) -> None:
    # Random play scores 4 of 8; reading the (latest stacked) frame scores 8.
    doc = job("kuberl.envs:make", {"id": "tests.envs:make_bright_side", "frameStack": 2}, tmp_path)
    assert train_until(doc, 7.5, 60_000) >= 7.0


@pytest.mark.learning
def test_dict_observations_are_flattened(tmp_path: Path) -> None:
    # Random play scores 2 of 6; using obs["target"] scores 6.
    doc = job("tests.envs:make_match_target", {}, tmp_path)
    assert train_until(doc, 5.5, 60_000) >= 5.0
