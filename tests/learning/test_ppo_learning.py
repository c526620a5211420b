"""PPO learns: fixed seeds, bounded budgets, Ray env runners exercised (envRunners ≥ 1).

Budgets were checked over several seeds (see docs/algorithms/ppo.md) and carry a wide margin.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from kuberl.algorithm import build_algorithm
from kuberl.spec import apply_overrides, read_document

ROOT = Path(__file__).resolve().parents[2]
SEED = int(os.environ.get("KUBERL_TEST_SEED", "0"))


def train_example(name: str, tmp_path: Path, *overrides: str) -> tuple[float, int]:
    doc = apply_overrides(
        read_document(ROOT / "examples" / name), [f"seed={SEED}", f"runDir={tmp_path}", *overrides]
    )
    algo = build_algorithm(doc)
    stop = algo.spec.stop
    assert stop.timesteps is not None
    assert stop.episode_return_mean is not None
    try:
        best = float("-inf")
        while algo.timesteps < stop.timesteps:
            ret = algo.train()["episode_return_mean"]
            if ret is not None:
                best = max(best, ret)
                if ret >= stop.episode_return_mean:
                    break
        return best, algo.timesteps
    finally:
        algo.stop()


@pytest.mark.learning
@pytest.mark.usefixtures("ray_session")
def test_ppo_cartpole_reaches_475(tmp_path: Path) -> None:
    best, steps = train_example("ppo-job.yaml", tmp_path, "resources.envRunners=2")
    assert best >= 475, f"mean return {best:.1f} after {steps} steps"


@pytest.mark.learning
@pytest.mark.usefixtures("ray_session")
def test_ppo_pendulum_reaches_minus_350_within_500k_steps(tmp_path: Path) -> None:
    best, steps = train_example("ppo-pendulum.yaml", tmp_path, "stop.episodeReturnMean=-350")
    assert best >= -350, f"mean return {best:.1f} after {steps} steps"
    assert steps <= 500_000
