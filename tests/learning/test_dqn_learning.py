"""DQN learns CartPole-v1: greedy evaluation mean ≥ 400 within 100k env steps, one Ray env runner
(seeds checked: docs/algorithms/dqn.md)."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.learning.common import SEED, example, train_until_evaluation


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


@pytest.mark.learning
@pytest.mark.usefixtures("ray_session")
def test_dqn_cartpole_with_two_ddp_learners_reaches_400_within_100k_steps(tmp_path: Path) -> None:
    """The same example, threshold and budget on two data-parallel learners, with replayed minibatches of
    128 split 64/64 over two DDP ranks (gloo), whose averaged gradient is the one learner's step
    (tests/unit/test_dqn_learners.py checks that exactly). Seeds checked: docs/algorithms/dqn.md."""
    doc = example(
        "dqn-cartpole.yaml",
        tmp_path,
        "resources.envRunners=1",
        "resources.learners=2",
        "resources.cpusPerLearner=0.5",  # one runner (1 CPU) and two learners in the tests' 2-CPU Ray
        # Every minibatch is a round trip to both ranks, the test's main cost: twice the example's batch
        # at the same replay ratio (trainingIntensity) is half the round trips per env step.
        "config.train_batch_size=128",
    )
    out = train_until_evaluation(
        doc,
        threshold=400,
        budget=100_000,
        every=2_000,
        ready=lambda algo, result: (result["episode_return_mean"] or 0) >= 150,
    )
    print(f"dqn-cartpole, 2 DDP learners, seed {SEED}: {out.describe()}")
    assert out.best >= 400, out.describe()
    assert out.steps <= 100_000 + 1_000
