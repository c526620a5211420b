"""PPO learns CartPole-v1 from 4 external simulator processes that reach the trainer only through the
policy server's HTTP API (kuberl.PolicyClient in examples/external_cartpole_client.py).

Budgets were checked over seeds 0-4 (docs/external.md) and carry a margin.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from kuberl.build import build_algorithm
from kuberl.spec.external import TOKEN_ENV
from tests.learning.common import ROOT, SEED, Outcome, example

CLIENTS = 4
TOKEN = "learning-test-token"


def train_with_external_clients(tmp_path: Path, mode: str, *, threshold: float, budget: int) -> Outcome:
    os.environ[TOKEN_ENV] = TOKEN
    try:
        algo = build_algorithm(example("ppo-external.yaml", tmp_path, "external.port=0", "resume=never"))
    finally:
        del os.environ[TOKEN_ENV]
    env = {**os.environ, TOKEN_ENV: TOKEN, "OMP_NUM_THREADS": "1"}
    clients = [
        subprocess.Popen(
            [
                sys.executable,
                str(ROOT / "examples" / "external_cartpole_client.py"),
                f"--address={algo.runners.url}",
                f"--mode={mode}",
                f"--seed={SEED * 100 + i}",
                "--update-interval=1",
            ],
            env=env,
            stdout=subprocess.DEVNULL,
        )
        for i in range(CLIENTS)
    ]
    out = Outcome()
    try:
        while algo.timesteps < budget and out.best < threshold:
            result = algo.train()
            out.results.append(result)
            if result["episode_return_mean"] is not None:
                out.best = max(out.best, result["episode_return_mean"])
        out.steps = algo.timesteps
        print(f"{mode}: {out.describe()}")  # the seeds' steps for docs/external.md
    finally:
        algo.stop()  # the server goes away; the clients notice and exit
        for p in clients:
            try:
                p.wait(timeout=30)
            except subprocess.TimeoutExpired:
                p.kill()
    return out


@pytest.mark.learning
def test_ppo_remote_mode_reaches_400(tmp_path: Path) -> None:
    out = train_with_external_clients(tmp_path, "remote", threshold=400, budget=150_000)
    assert out.best >= 400, out.describe()


@pytest.mark.learning
def test_ppo_local_mode_learns(tmp_path: Path) -> None:
    # Local-mode clients act with weights up to a second (and an upload) old, so PPO's batches are
    # slightly off-policy: it learns, more slowly per step than remote mode (docs/external.md).
    out = train_with_external_clients(tmp_path, "local", threshold=300, budget=200_000)
    assert out.best >= 300, out.describe()
