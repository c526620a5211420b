"""Ape-X DDPG learns Pendulum-v1: the deterministic policy's 10-episode evaluation mean reaches −300 within
30k env steps, with two asynchronous Ray env runners (8 sub-envs on the noise ladder). Evaluated every
1,000 env steps once learning has started. Seeds checked and steps taken: docs/algorithms/apex_ddpg.md."""

from __future__ import annotations

from pathlib import Path

import pytest

from kuberl.spec import parse_job
from kuberl.spec.algorithms.apex_ddpg import APEX_DDPGConfig
from tests.learning.common import example, train_until_evaluation


@pytest.mark.learning
@pytest.mark.usefixtures("ray_session")
def test_apex_ddpg_pendulum_evaluation_reaches_minus_300_within_30k_steps(tmp_path: Path) -> None:
    doc = example("apex-ddpg-pendulum.yaml", tmp_path, "resources.envRunners=2", "evaluation.interval=0")
    config = parse_job(doc).spec.config
    assert isinstance(config, APEX_DDPGConfig)
    out = train_until_evaluation(
        doc,
        threshold=-300.0,
        budget=30_000,
        every=1_000,
        first=config.num_steps_sampled_before_learning_starts,
    )
    print(out.describe())  # with -s: the steps and evaluations recorded in the docs page
    assert out.evaluations, "no evaluation ran"
    assert out.best >= -300.0, out.describe()
    # an iteration may overshoot by one round of fragments (2 runners × 2 requests × 64 steps)
    assert out.steps <= 30_000 + 1_000
