"""Stop criteria: the first one met ends the run, and an unset one never does."""

from __future__ import annotations

from typing import Any

import pytest

from kuberl.spec import StopSpec
from kuberl.trainer import stop_reason


def result(**kw: Any) -> dict[str, Any]:
    base = {"episode_return_mean": None, "timesteps_total": 0, "training_iteration": 0, "time_total_s": 0.0}
    return {**base, **kw}


@pytest.mark.parametrize(
    ("stop", "res", "expected"),
    [
        (StopSpec(), result(episode_return_mean=1e9, timesteps_total=10**9, training_iteration=10**6), None),
        (StopSpec(episode_return_mean=475), result(episode_return_mean=474.9), None),
        (StopSpec(episode_return_mean=475), result(episode_return_mean=475.0), "episodeReturnMean"),
        (StopSpec(episode_return_mean=475), result(episode_return_mean=None), None),  # no episode finished
        (StopSpec(episode_return_mean=-200), result(episode_return_mean=float("nan")), None),
        (StopSpec(timesteps=1000), result(timesteps_total=999), None),
        (StopSpec(timesteps=1000), result(timesteps_total=1000), "timesteps"),
        (StopSpec(iterations=3), result(training_iteration=3), "iterations"),
        (StopSpec(time_seconds=60), result(time_total_s=59.9), None),
        (StopSpec(time_seconds=60), result(time_total_s=60.0), "timeSeconds"),
        (StopSpec(timesteps=10, iterations=1), result(timesteps_total=5, training_iteration=1), "iterations"),
    ],
)
def test_stop_reason(stop: StopSpec, res: dict[str, Any], expected: str | None) -> None:
    reason = stop_reason(stop, res)
    if expected is None:
        assert reason is None
    else:
        assert reason is not None
        assert reason.startswith(expected)
