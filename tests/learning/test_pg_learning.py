"""PG (REINFORCE with a baseline) learns CartPole-v1: mean return ≥ 300 within 500k steps, one Ray runner
(seeds in docs/algorithms/pg.md)."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.learning.common import example, train_until_return


@pytest.mark.learning
@pytest.mark.usefixtures("ray_session")
def test_pg_cartpole_reaches_300_within_500k_steps(tmp_path: Path) -> None:
    out = train_until_return(
        example("pg-cartpole.yaml", tmp_path, "resources.envRunners=1"), threshold=300, budget=500_000
    )
    assert out.best >= 300, out.describe()
