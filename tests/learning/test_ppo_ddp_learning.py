"""PPO learns with data-parallel learners: two DDP learner actors (gloo) on the tuned CartPole example.

The budget is the single-learner PPO test's (tests/learning/test_ppo_learning.py); the seeds checked and
the steps taken are in docs/algorithms/ppo.md ("Data-parallel learners").
"""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.learning.common import example, train_until_return


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
