"""Recurrent policies learn a memory task that feed-forward ones cannot (kuberl.envs RecallEnv).

The cue is visible only in an episode's first observation and must be named 5 steps later: without
memory the query step looks the same whatever the cue, so a feed-forward policy is capped at chance
(0.25 with 4 cues). Budgets were checked over seeds 0-4 (docs/models.md) and carry a wide margin.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.learning.common import example, train_until_return

CHANCE = 0.25


@pytest.mark.learning
@pytest.mark.usefixtures("ray_session")
def test_ppo_lstm_solves_recall_where_feed_forward_ppo_cannot(tmp_path: Path) -> None:
    budget = 60_000
    lstm = train_until_return(
        example("ppo-lstm-recall.yaml", tmp_path / "lstm"), threshold=0.9, budget=budget
    )
    assert lstm.best >= 0.9, lstm.describe()
    # The same job without the LSTM, for the whole budget: stuck near chance.
    ff = train_until_return(
        example("ppo-lstm-recall.yaml", tmp_path / "ff", "config.model.use_lstm=false"),
        threshold=0.9,
        budget=budget,
    )
    assert ff.steps >= budget
    assert ff.best < 0.5, ff.describe()
    final = ff.results[-1]["episode_return_mean"]
    assert abs(final - CHANCE) < 0.15, ff.describe()


@pytest.mark.learning
@pytest.mark.usefixtures("ray_session")
@pytest.mark.parametrize("algorithm", ["IMPALA", "APPO"])
def test_vtrace_lstm_solves_recall_with_two_async_runners(algorithm: str, tmp_path: Path) -> None:
    doc = example("impala-lstm-recall.yaml", tmp_path, f"algorithm={algorithm}")
    out = train_until_return(doc, threshold=0.9, budget=200_000)
    assert out.best >= 0.9, out.describe()
    assert out.results[0]["env_runners"]["num_healthy"] >= 2
    lag = max(r["learner"]["default_policy"]["policy_lag_max"] for r in out.results)
    assert lag > 0, "the runners never sampled with a stale policy: sampling was not asynchronous"
