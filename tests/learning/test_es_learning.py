"""ES learns CartPole-v1: a 10-episode evaluation of θ reaches ≥ 400 within 150k env steps, two Ray
runners (seeds and steps in docs/algorithms/es.md)."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.learning.common import example, train_until_evaluation


@pytest.mark.learning
@pytest.mark.usefixtures("ray_session")
def test_es_cartpole_evaluation_reaches_400_within_150k_steps(tmp_path: Path) -> None:
    out = train_until_evaluation(
        example("es-cartpole.yaml", tmp_path, "evaluation.interval=0"),
        threshold=400,
        budget=150_000,
        every=10_000,
    )
    assert out.best >= 400, out.describe()
