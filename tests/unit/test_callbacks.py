"""kuberl.core.callbacks: log_value's reduces, the per-iteration summary, errors that name the hook, and
the Prometheus cap on custom metric names (kuberl.metrics)."""

from __future__ import annotations

import logging
import pickle

import pytest

from kuberl.core.callbacks import (
    CallbackError,
    DefaultCallbacks,
    Episode,
    EpisodeMetrics,
    Hooks,
    callback_error_of,
    hist_stats,
    summarize,
)
from kuberl.metrics import MAX_CUSTOM_METRICS, TrainerMetrics


class Raises(DefaultCallbacks):
    def on_train_result(self, **kwargs: object) -> None:
        raise KeyError("missing")


@pytest.mark.parametrize(("reduce", "expected"), [("mean", 2.0), ("min", 1.0), ("max", 3.0), ("sum", 6.0)])
def test_log_value_reduces_within_the_episode(reduce: str, expected: float) -> None:
    ep = Episode(env_index=0, worker_index=0)
    for v in (1, 3, 2):
        ep.log_value("x", v, reduce=reduce)  # type: ignore[arg-type]
    ep.custom_metrics["y"] = 7
    assert ep.finish() == {"x": expected, "y": 7.0}


def test_log_value_refuses_a_changed_or_unknown_reduce() -> None:
    ep = Episode(env_index=0, worker_index=0)
    ep.log_value("x", 1, reduce="max")
    with pytest.raises(ValueError, match="reduce='max' before"):
        ep.log_value("x", 1, reduce="min")
    with pytest.raises(ValueError, match="must be one of"):
        ep.log_value("z", 1, reduce="median")  # type: ignore[arg-type]


def test_summary_is_over_the_episodes_that_logged_each_name() -> None:
    m = EpisodeMetrics()
    for i, length in enumerate((3, 5, 10)):
        ep = Episode(env_index=i, worker_index=1, length=length)
        ep.custom_metrics["len"] = length
        if i:
            ep.custom_metrics["late"] = float("nan") if i == 1 else 4.0
        ep.hist_data["len"] = [length]
        m.add(ep)
    assert summarize(m.custom_metrics) == {
        "late_mean": 4.0, "late_min": 4.0, "late_max": 4.0,  # NaN skipped
        "len_mean": 6.0, "len_min": 3.0, "len_max": 10.0,
    }  # fmt: skip
    assert hist_stats([1.0, 2.0], [3, 4], m.hist_data) == {
        "episode_return": [1.0, 2.0],
        "episode_lengths": [3.0, 4.0],
        "len": [3.0, 5.0, 10.0],
    }


def test_a_raising_hook_names_itself_and_survives_pickling() -> None:
    hooks = Hooks("tests.unit.test_callbacks:Raises")
    with pytest.raises(CallbackError) as info:
        hooks("on_train_result", algorithm=None, result={})
    msg = str(info.value)
    assert msg.startswith(
        "spec.config.callbacks: tests.unit.test_callbacks:Raises.on_train_result raised KeyError"
    )
    assert "test_callbacks.py:" in msg
    assert "exit status 70" in msg
    again = pickle.loads(pickle.dumps(info.value))  # it crosses from Ray actors to the driver
    assert callback_error_of(again) is not None
    assert again.message == msg
    Hooks(None)("on_train_result")  # no callbacks: a no-op


def test_callbacks_must_subclass_default_callbacks() -> None:
    with pytest.raises(TypeError, match=r"not a subclass of kuberl\.DefaultCallbacks"):
        Hooks("tests.unit.test_callbacks:test_callbacks_must_subclass_default_callbacks")


def test_prometheus_caps_the_custom_metric_names(caplog: pytest.LogCaptureFixture) -> None:
    m = TrainerMetrics(job="j", namespace="ns", algorithm="PPO")
    custom = {f"m{i}_{stat}": float(i) for i in range(MAX_CUSTOM_METRICS + 5) for stat in ("mean", "max")}
    with caplog.at_level(logging.WARNING, logger="kuberl.metrics"):
        m.update({"training_iteration": 1, "custom_metrics": custom})
        m.update({"training_iteration": 2, "custom_metrics": custom})
    text = m.exposition().decode()
    series = [ln for ln in text.splitlines() if ln.startswith("kuberl_custom_metric{")]
    assert len(series) == 2 * MAX_CUSTOM_METRICS
    assert any('name="m3"' in ln and 'stat="max"' in ln and ln.endswith(" 3.0") for ln in series)
    warned = [r for r in caplog.records if "not exported to Prometheus" in r.getMessage()]
    assert len(warned) == 1  # once per run, not once per refused name or per iteration
    assert "'m32'" in warned[0].getMessage()
    status = m.status()["customMetrics"]
    assert len(status) == MAX_CUSTOM_METRICS
    assert status["m3"] == {"mean": 3.0, "max": 3.0}
