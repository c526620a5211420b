"""DQN learns CartPole-v1: greedy evaluation mean ≥ 400 within 100k env steps, fixed seed, one Ray
env runner. The budget was checked over several seeds (see docs/algorithms/dqn.md)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from kuberl.algorithm import build_algorithm
from kuberl.spec import apply_overrides, read_document

ROOT = Path(__file__).resolve().parents[2]
SEED = int(os.environ.get("KUBERL_TEST_SEED", "0"))
BUDGET = 100_000
THRESHOLD = 400.0
EVAL_EVERY = 2_000  # env steps between greedy evaluations once training returns look promising


@pytest.mark.learning
@pytest.mark.usefixtures("ray_session")
def test_dqn_cartpole_greedy_evaluation_reaches_400_within_100k_steps(tmp_path: Path) -> None:
    doc = apply_overrides(
        read_document(ROOT / "examples" / "dqn-cartpole.yaml"),
        [f"seed={SEED}", f"runDir={tmp_path}", "resources.envRunners=1"],
    )
    algo = build_algorithm(doc)
    best, last_eval = float("-inf"), 0
    try:
        while algo.timesteps < BUDGET:
            ret = algo.train()["episode_return_mean"]
            # Evaluating is cheap but not free: only once the (exploring) training return is decent.
            if ret is not None and ret >= 150 and algo.timesteps - last_eval >= EVAL_EVERY:
                last_eval = algo.timesteps
                best = max(best, algo.evaluate(10, explore=False)["episode_return_mean"])
                if best >= THRESHOLD:
                    break
    finally:
        algo.stop()
    assert best >= THRESHOLD, f"best greedy evaluation mean {best:.1f} after {algo.timesteps} steps"
    assert algo.timesteps <= BUDGET + 1_000
