"""IMPALA learns CartPole-v1 with two asynchronous Ray env runners: mean return ≥ 400 within 500k steps.

Asynchronous training is not bit-reproducible (fragments arrive in varying order), so the budget carries
a wide margin; seeds checked are in docs/algorithms/impala.md.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.learning.common import example, train_until_return


@pytest.mark.learning
@pytest.mark.usefixtures("ray_session")
def test_impala_cartpole_reaches_400_within_500k_steps(tmp_path: Path) -> None:
    doc = example("impala-cartpole.yaml", tmp_path)
    out = train_until_return(doc, threshold=400, budget=500_000)
    assert out.best >= 400, out.describe()
    assert out.results[0]["env_runners"]["num_healthy"] >= 2
    lag = max(r["learner"]["default_policy"]["policy_lag_max"] for r in out.results)
    assert lag > 0, "the runners never sampled with a stale policy: sampling was not asynchronous"
