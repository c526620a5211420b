"""PPO learns: fixed seeds, bounded budgets, Ray env runners exercised (envRunners ≥ 1).

Budgets were checked over seeds 0-4 (docs/algorithms/ppo.md) and carry a wide margin.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.learning.common import example, train_until_return


@pytest.mark.learning
@pytest.mark.usefixtures("ray_session")
def test_ppo_cartpole_reaches_475(tmp_path: Path) -> None:
    out = train_until_return(
        example("ppo-job.yaml", tmp_path, "resources.envRunners=2"), threshold=475, budget=300_000
    )
    assert out.best >= 475, out.describe()


@pytest.mark.learning
@pytest.mark.usefixtures("ray_session")
def test_ppo_pendulum_reaches_minus_350_within_500k_steps(tmp_path: Path) -> None:
    out = train_until_return(example("ppo-pendulum.yaml", tmp_path), threshold=-350, budget=500_000)
    assert out.best >= -350, out.describe()
