"""The Python API: a custom env class by import path, train, save → restore → identical actions."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import gymnasium as gym
import numpy as np
import pytest

from kuberl.build import build_algorithm
from tests.fixtures.jobs import job_doc


class GoRight(gym.Env[np.ndarray, np.int64]):
    """Defined here, in the test module: runners import it by path (`tests.integration.test_api:make_env`)."""

    def __init__(self, size: int) -> None:
        self.size = size
        self.observation_space = gym.spaces.Box(-1.0, 1.0, shape=(2,), dtype=np.float32)
        self.action_space = gym.spaces.Discrete(2)
        self.x = 0

    def reset(
        self, *, seed: int | None = None, options: dict[str, Any] | None = None
    ) -> tuple[np.ndarray, dict[str, Any]]:
        super().reset(seed=seed)
        self.x = 0
        return self._obs(), {}

    def _obs(self) -> np.ndarray:
        return np.array([self.x / self.size, 1.0], dtype=np.float32)

    def step(self, action: np.int64) -> tuple[np.ndarray, float, bool, bool, dict[str, Any]]:
        self.x += 1 if int(action) == 1 else -1
        self.x = max(self.x, -self.size)
        done = self.x >= self.size
        return self._obs(), 1.0 if done else -0.05, done, False, {}


def make_env(config: dict[str, Any]) -> gym.Env[np.ndarray, np.int64]:
    return gym.wrappers.TimeLimit(GoRight(int(config["size"])), max_episode_steps=40)


def job(tmp_path: Path, runners: int) -> dict[str, Any]:
    config = {
        "train_batch_size": 1024,
        "minibatch_size": 256,
        "num_epochs": 4,
        "lr": 0.003,
        "observation_filter": "MeanStdFilter",
    }
    return job_doc(
        "PPO",
        "tests.integration.test_api:make_env",
        seed=1,
        name="api-test",
        run_dir=tmp_path / "run",
        config=config,
        runners=runners,
        envConfig={"size": 4},
        checkpoint={"uri": str(tmp_path / "ckpt")},
    )


@pytest.mark.usefixtures("ray_session")
def test_custom_env_trains_through_ray_runners_and_restores_identically(tmp_path: Path) -> None:
    algo = build_algorithm(job(tmp_path, runners=2))
    try:
        for _ in range(15):
            result = algo.train()
        assert result["episode_return_mean"] > 0.5, result["episode_return_mean"]  # reaches the goal
        uri = algo.save()
        obs = np.random.default_rng(0).uniform(-1, 1, size=(64, 2)).astype(np.float32)
        before = algo.compute_actions(obs)
        before_eval = algo.evaluate(5)
    finally:
        algo.stop()
    fresh = build_algorithm(job(tmp_path, runners=0))
    try:
        fresh.restore(uri)
        np.testing.assert_array_equal(fresh.compute_actions(obs), before)
        assert fresh.iteration == 15
        assert fresh.timesteps == result["timesteps_total"]
        assert fresh.obs_filter is not None
        assert fresh.obs_filter.count > 0
        assert fresh.evaluate(5) == before_eval
    finally:
        fresh.stop()


def test_single_observation_and_stochastic_actions(tmp_path: Path) -> None:
    algo = build_algorithm(job(tmp_path, runners=0))
    try:
        a = algo.compute_actions(np.array([0.0, 1.0], dtype=np.float32))
        assert a.shape == ()
        assert int(a) in (0, 1)
        many = algo.compute_actions(np.zeros((500, 2), dtype=np.float32), explore=True)
        assert set(np.unique(many).tolist()) == {0, 1}  # an untrained policy explores both actions
    finally:
        algo.stop()


def test_custom_env_example_script_runs() -> None:
    import subprocess
    import sys

    root = Path(__file__).resolve().parents[2]
    res = subprocess.run(
        [sys.executable, "-m", "examples.custom_env"], cwd=root, capture_output=True, text=True, timeout=300
    )
    assert res.returncode == 0, res.stderr
    last_iter = [line for line in res.stdout.splitlines() if line.startswith("iter")][-1]
    assert float(last_iter.split()[-1]) > 0.5  # walks to the end of the corridor
