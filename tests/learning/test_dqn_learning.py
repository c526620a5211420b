"""DQN learns CartPole-v1: greedy evaluation mean ≥ 400 within 100k env steps, one Ray env runner
(seeds checked: docs/algorithms/dqn.md)."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.learning.common import example, train_until_evaluation


@pytest.mark.learning
@pytest.mark.usefixtures("ray_session")
def test_dqn_cartpole_greedy_evaluation_reaches_400_within_100k_steps(tmp_path: Path) -> None:
    doc = example("dqn-cartpole.yaml", tmp_path, "resources.envRunners=1")
    # Evaluating is cheap but not free: only once the (exploring) training return is decent.
    out = train_until_evaluation(
        doc,
        threshold=400,
        budget=100_000,
        every=2_000,
        ready=lambda algo, result: (result["episode_return_mean"] or 0) >= 150,
    )
    assert out.best >= 400, out.describe()
    assert out.steps <= 100_000 + 1_000
