"""ARS V2-t with a linear policy learns CartPole-v1: a 10-episode evaluation of θ reaches ≥ 400 within
60k env steps, two Ray runners (seeds and steps in docs/algorithms/ars.md)."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.learning.common import example, train_until_evaluation


@pytest.mark.learning
@pytest.mark.usefixtures("ray_session")
def test_ars_linear_cartpole_evaluation_reaches_400_within_60k_steps(tmp_path: Path) -> None:
    out = train_until_evaluation(
        example("ars-cartpole.yaml", tmp_path, "evaluation.interval=0"),
        threshold=400,
        budget=60_000,
        every=5_000,
    )
    assert out.best >= 400, out.describe()
