"""A2C learns CartPole-v1: mean return ≥ 400 within 500k steps, one Ray env runner (seeds in docs/algorithms/a2c.md)."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.learning.common import example, train_until_return


@pytest.mark.learning
@pytest.mark.usefixtures("ray_session")
def test_a2c_cartpole_reaches_400_within_500k_steps(tmp_path: Path) -> None:
    doc = example("a2c-cartpole.yaml", tmp_path, "resources.envRunners=1")
    out = train_until_return(doc, threshold=400, budget=500_000)
    assert out.best >= 400, out.describe()
