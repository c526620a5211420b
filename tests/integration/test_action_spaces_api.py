"""The new action spaces through the Python API users call: compute_actions and an LSTM policy's
compute_actions_with_state return actions in the env's own structure, and an external simulator with a
MultiDiscrete action space (the kind simulators already speak) trains PPO through the policy server in
both client modes."""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Any

import gymnasium as gym
import numpy as np
import pytest

from kuberl import PolicyClient
from kuberl.build import build_algorithm
from kuberl.envs import make_buttons
from kuberl.external.client import PolicyServerUnavailable
from kuberl.external.runner_group import ExternalRunnerGroup
from kuberl.spec import apply_overrides, read_document
from kuberl.spec.external import TOKEN_ENV

ROOT = Path(__file__).resolve().parents[2]
LSTM = [
    "config.model.use_lstm=true",
    "config.model.lstm_use_prev_action=true",
    "config.model.lstm_cell_size=16",
    "config.model.max_seq_len=4",
]


def job(tmp_path: Path, *overrides: str) -> dict[str, Any]:
    return apply_overrides(
        read_document(ROOT / "examples" / "ppo-multidiscrete.yaml"),
        [f"runDir={tmp_path}", "config.train_batch_size=256", "config.minibatch_size=64", *overrides],
    )


@pytest.mark.parametrize("kind", ["dict", "tuple", "multi_binary"])
def test_compute_actions_returns_the_env_structure(tmp_path: Path, kind: str) -> None:
    env = make_buttons({"action": kind})
    obs, _ = env.reset(seed=0)
    algo = build_algorithm(job(tmp_path, f"envConfig.action={kind}"))
    try:
        algo.train()
        single = algo.compute_actions(obs)
        assert env.action_space.contains(single), single
        env.step(single)
        batch = algo.compute_actions(np.stack([obs, obs, obs]), explore=True)
        assert gym.vector.utils.batch_space(env.action_space, 3).contains(batch), batch
    finally:
        algo.stop()


@pytest.mark.parametrize("kind", ["multi_discrete", "dict"])
def test_an_lstm_policy_trains_and_acts_in_the_new_spaces(tmp_path: Path, kind: str) -> None:
    env = make_buttons({"action": kind})
    obs, _ = env.reset(seed=0)
    algo = build_algorithm(job(tmp_path, f"envConfig.action={kind}", *LSTM))
    try:
        for _ in range(2):
            result = algo.train()
        assert result["training_iteration"] == 2
        assert result["episode_return_mean"] is not None
        state = algo.initial_state(1)
        assert state is not None
        for _ in range(3):
            action, state = algo.compute_actions_with_state(obs, state)
            assert env.action_space.contains(action), action
            obs, *_ = env.step(action)
    finally:
        algo.stop()


@pytest.mark.parametrize("mode", ["remote", "local"])
def test_an_external_multidiscrete_simulator_trains_ppo(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, mode: str
) -> None:
    monkeypatch.setenv(TOKEN_ENV, "tok")
    doc = job(tmp_path, "external.enabled=true", "external.port=0", "resources.envRunners=1")
    algo = build_algorithm(doc)
    assert isinstance(algo.runners, ExternalRunnerGroup)
    url = algo.runners.url
    stop = threading.Event()
    seen: list[Any] = []

    def simulate() -> None:
        env = make_buttons({"action": "multi_discrete"})
        try:
            with PolicyClient(url, token="tok", inference_mode=mode, seed=1) as client:  # type: ignore[arg-type]
                obs, _ = env.reset(seed=3)
                while not stop.is_set():
                    eid = client.start_episode()
                    while True:
                        action = client.get_action(eid, obs)
                        seen.append(action)
                        obs, reward, terminated, truncated, _ = env.step(np.asarray(action))
                        client.log_returns(eid, float(reward))
                        if terminated or truncated:
                            client.end_episode(eid, obs, truncated=truncated and not terminated)
                            obs, _ = env.reset()
                            break
        except PolicyServerUnavailable:
            # The test stops the server after its iteration (the client's closing upload included).
            if not stop.is_set():
                raise

    sim = threading.Thread(target=simulate, daemon=True)
    sim.start()
    try:
        result = algo.train()
        assert result["timesteps_total"] >= 256
        assert result["episode_return_mean"] is not None
    finally:
        stop.set()
        algo.stop()
        sim.join(timeout=30)
    space = make_buttons({"action": "multi_discrete"}).action_space
    assert seen
    assert all(space.contains(np.asarray(a)) for a in seen)
