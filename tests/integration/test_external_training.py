"""The external runner group inside a real Algorithm: its batches have the env runner's columns, the
trainer trains on them, and a client process that dies mid-episode loses nothing it sent."""

from __future__ import annotations

import re
import subprocess
import sys
import threading
from pathlib import Path

import numpy as np
import pytest
import torch

from kuberl import PolicyClient
from kuberl.build import build_algorithm
from kuberl.core.env_runner import EnvRunner, RunnerConfig
from kuberl.core.sample_batch import Columns
from kuberl.external.runner_group import ExternalRunnerGroup
from kuberl.metrics import TrainerMetrics
from kuberl.spec import SpecError, apply_overrides, read_document
from kuberl.spec.algorithms import ModelConfig
from kuberl.spec.external import TOKEN_ENV, ExternalSpec
from tests.integration.test_external_server import play

ROOT = Path(__file__).resolve().parents[2]


def external_job(tmp_path: Path, *overrides: str) -> dict[str, object]:
    return apply_overrides(
        read_document(ROOT / "examples" / "ppo-external.yaml"),
        [
            f"runDir={tmp_path}",
            "external.port=0",
            "config.train_batch_size=256",
            "config.minibatch_size=64",
            *overrides,
        ],
    )


def test_external_batches_have_the_env_runner_columns(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(TOKEN_ENV, "tok")
    algo = build_algorithm(external_job(tmp_path))
    assert isinstance(algo.runners, ExternalRunnerGroup)
    url = algo.runners.url  # bound here: the isinstance narrowing does not reach into the closure
    stop = threading.Event()

    def simulate() -> None:
        with PolicyClient(url, token="tok") as c:
            while not stop.is_set():
                play(c, 1, seed=3)

    sim = threading.Thread(target=simulate, daemon=True)
    sim.start()
    try:
        [rollout] = algo.runners.sample()
        batch = rollout.batch
        ref = EnvRunner(algo.runner_config).sample().batch
        assert set(batch) == set(ref)
        for k in ref:
            assert batch[k].dtype == ref[k].dtype, k
            assert batch[k].shape[1] == 1, k
            assert batch[k].shape[2:] == ref[k].shape[2:], k
        assert batch.env_steps >= 256
        # V(s) from the current weights; inside an episode V(s') is the next step's V(s).
        module = algo.policy_module()
        with torch.inference_mode():
            _, v = module(torch.from_numpy(batch[Columns.OBS][:, 0]))
        np.testing.assert_allclose(batch[Columns.VF_PREDS][:, 0], v.numpy(), rtol=1e-5, atol=1e-6)
        inside = ~(batch[Columns.TERMINATEDS] | batch[Columns.TRUNCATEDS])[:-1, 0]
        np.testing.assert_allclose(
            batch[Columns.NEXT_VF_PREDS][:-1, 0][inside],
            batch[Columns.VF_PREDS][1:, 0][inside],
            rtol=1e-5,
            atol=1e-6,
        )
        assert batch[Columns.TRUNCATEDS][-1, 0] or batch[Columns.TERMINATEDS][-1, 0]  # the lane ends cut
        # The whole training step runs on it, and the episode metrics flow.
        result = algo.train()
        assert result["num_env_steps_trained"] >= 256
        assert result["episode_return_mean"] is not None
        assert np.isfinite(result["learner"]["default_policy"]["total_loss"])
        server = result["policy_server"]
        assert server["requests_total"] >= 256
        assert server["policy_version"] >= 2  # the initial sync and the one after the update
        metrics = TrainerMetrics(job="ext", namespace="rl", algorithm="PPO")
        metrics.update(result)
        text = metrics.exposition().decode()
        assert re.search(r"kuberl_policy_server_requests_total\{[^}]*\} [1-9]", text)
        assert "kuberl_policy_server_open_episodes{" in text
    finally:
        stop.set()
        algo.stop()
        sim.join(timeout=10)


def test_unsupported_algorithms_and_missing_tokens_are_spec_errors(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv(TOKEN_ENV, raising=False)
    doc = external_job(tmp_path, "external.tokenSecret=null")
    with pytest.raises(SpecError, match="bearer token"):
        build_algorithm(doc)
    doc = apply_overrides(doc, ["algorithm=DQN", "config={}", "external.insecure=true"])
    with pytest.raises(SpecError, match=r"spec\.external\.enabled"):
        build_algorithm(doc)


CLIENT_THAT_DIES = """
import os, sys, gymnasium as gym
from kuberl import PolicyClient
c = PolicyClient(sys.argv[1])
env = gym.make("CartPole-v1")
obs, _ = env.reset(seed=0)
eid = c.start_episode()
for _ in range(10):
    obs, r, term, trunc, _ = env.step(c.get_action(eid, obs))
    if term or trunc:  # keep the one episode going on the server's side
        obs, _ = env.reset()
    c.log_returns(eid, 1.0, info={"sent": True})  # info: sent at once, not with the next request
os._exit(0)  # vanish mid-episode: no end_episode, no goodbye
"""


def test_a_client_process_that_dies_mid_episode_loses_nothing_it_sent() -> None:
    env_cfg = RunnerConfig(
        env="CartPole-v1", env_config={}, num_envs=1, rollout_length=10, model=ModelConfig()
    )
    group = ExternalRunnerGroup(
        env_cfg, ExternalSpec(enabled=True, insecure=True, port=0, idle_timeout_seconds=0.5), batch_steps=10
    )
    try:
        proc = subprocess.run([sys.executable, "-c", CLIENT_THAT_DIES, group.url], timeout=60, check=False)
        assert proc.returncode == 0
        [rollout] = group.sample()  # would block forever if the 10th step were lost
        batch = rollout.batch
        assert batch.env_steps == 10
        assert batch[Columns.REWARDS].sum() == 10.0
        assert not batch[Columns.TERMINATEDS].any()
        assert batch[Columns.TRUNCATEDS][:, 0].tolist() == [False] * 9 + [True]  # cut, bootstrapped
        assert rollout.episode_returns == []  # it never finished
        assert group.service.book.abandoned_total == 1
    finally:
        group.stop()
