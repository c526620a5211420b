"""Rainbow's parts of DQN learn CartPole-v1 as plain DQN does: greedy evaluation mean ≥ 400 within 100k
env steps, one Ray env runner, for distributional (C51) at the test seed and noisy-net DQN at three
consecutive seeds (its exploration depends on the initial network, which is what went wrong before; seeds
checked and steps taken: docs/algorithms/dqn.md)."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.learning.common import SEED, example, train_until_evaluation

CASES = [
    ("dqn-c51-cartpole.yaml", SEED),
    *(("dqn-noisy-cartpole.yaml", SEED + k) for k in range(3)),
]


@pytest.mark.learning
@pytest.mark.usefixtures("ray_session")
@pytest.mark.parametrize(("name", "seed"), CASES, ids=[f"{n.removesuffix('.yaml')}-{s}" for n, s in CASES])
def test_rainbow_dqn_cartpole_greedy_evaluation_reaches_400_within_100k_steps(
    tmp_path: Path, name: str, seed: int
) -> None:
    doc = example(name, tmp_path, "resources.envRunners=1", f"seed={seed}")
    out = train_until_evaluation(
        doc,
        threshold=400,
        budget=100_000,
        every=2_000,
        ready=lambda algo, result: (result["episode_return_mean"] or 0) >= 150,
    )
    print(f"{name} seed {seed}: {out.describe()}")  # the steps taken, for docs/algorithms/dqn.md (pytest -s)
    assert out.best >= 400, out.describe()
    assert out.steps <= 100_000 + 1_000
