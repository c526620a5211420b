"""IMPALA and APPO learn CartPole-v1 with two asynchronous Ray env runners: mean return ≥ 400 within 500k
steps, and the runners really sample with stale policies.

Asynchronous training is not bit-reproducible (fragments arrive in varying order), so the budget carries
a wide margin; seeds checked are in docs/algorithms/impala.md and docs/algorithms/appo.md.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.learning.common import example, train_until_return


@pytest.mark.learning
@pytest.mark.usefixtures("ray_session")
@pytest.mark.parametrize("name", ["impala-cartpole.yaml", "appo-cartpole.yaml"], ids=["impala", "appo"])
def test_cartpole_reaches_400_within_500k_steps_sampling_asynchronously(tmp_path: Path, name: str) -> None:
    doc = example(name, tmp_path)
    out = train_until_return(doc, threshold=400, budget=500_000)
    assert out.best >= 400, out.describe()
    assert out.results[0]["env_runners"]["num_healthy"] >= 2
    lag = max(r["learner"]["default_policy"]["policy_lag_max"] for r in out.results)
    assert lag > 0, "the runners never sampled with a stale policy: sampling was not asynchronous"
