"""PPO learns with data-parallel learners: two DDP learner actors (gloo) on the tuned CartPole example, and
a recurrent (LSTM) policy on the recall memory task.

The budgets are the single-learner tests' (tests/learning/test_ppo_learning.py,
tests/learning/test_lstm_learning.py); the seeds checked and the steps taken are in docs/algorithms/ppo.md
("Data-parallel learners").
"""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.learning.common import SEED, example, train_until_return


@pytest.mark.learning
@pytest.mark.usefixtures("ray_session")
def test_ppo_cartpole_with_two_ddp_learners_reaches_400(tmp_path: Path) -> None:
    # Half a CPU per actor: two runners and two learners fit in the tests' 2-CPU Ray instance.
    doc = example(
        "ppo-job.yaml",
        tmp_path,
        "resources.envRunners=2",
        "resources.cpusPerRunner=0.5",
        "resources.learners=2",
        "resources.cpusPerLearner=0.5",
    )
    out = train_until_return(doc, threshold=400, budget=300_000)
    assert out.best >= 400, out.describe()


@pytest.mark.learning
@pytest.mark.usefixtures("ray_session")
def test_ppo_lstm_recall_with_two_ddp_learners(tmp_path: Path) -> None:
    """The memory task only an LSTM solves (feed-forward PPO stays at chance, 0.25), trained by two ranks that
    each unroll half of every minibatch's sequences (16 of 32) under DDP."""
    doc = example(
        "ppo-lstm-recall.yaml",
        tmp_path,
        "resources.learners=2",
        "resources.cpusPerLearner=0.5",  # one runner (1 CPU) and two learners in the tests' 2-CPU Ray
    )
    out = train_until_return(doc, threshold=0.9, budget=60_000)
    assert out.best >= 0.9, out.describe()
    print(f"recall, 2 DDP learners, seed {SEED}: {out.describe()}")
