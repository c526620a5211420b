"""kuberl.results: params.json, result.json lines and TensorBoard scalars of a run directory."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import pytest

from kuberl.results import ResultLogger, flatten_numeric, read_results


def result(iteration: int, ret: float | None = 10.0) -> dict[str, Any]:
    return {
        "training_iteration": iteration,
        "timesteps_total": 1000 * iteration,
        "episode_return_mean": ret,
        "episode_len_mean": float("nan"),
        "done": False,
        "timers": {"sample": 0.5, "learn": 0.25},
        "learner": {"default_policy": {"total_loss": 1.5 / iteration, "note": "text"}},
        "evaluation": {"episode_return_mean": 99.0},
    }


def test_params_json(tmp_path: Path) -> None:
    with ResultLogger(tmp_path / "run", tensorboard=False) as logger:
        logger.write_params(
            {"algorithm": "PPO", "config": {"lr": 3e-4, "gamma": float("nan")}, "dir": tmp_path}
        )
    text = (tmp_path / "run" / "params.json").read_text()
    assert "\n  " in text  # pretty
    params = json.loads(text)
    assert params == {"algorithm": "PPO", "config": {"gamma": None, "lr": 3e-4}, "dir": str(tmp_path)}


def test_result_lines_round_trip(tmp_path: Path) -> None:
    run = tmp_path / "run"
    with ResultLogger(run, tensorboard=False) as logger:
        logger.log(result(1))
        # Each line is flushed as written: readable before close.
        assert read_results(run)[0]["training_iteration"] == 1
        logger.log(result(2, ret=None))
    lines = (run / "result.json").read_text().splitlines()
    assert len(lines) == 2
    for line in lines:
        json.loads(line)  # strict JSON: NaN became null
        assert "NaN" not in line
    got = read_results(run)
    assert got == read_results(run / "result.json")
    assert [r["training_iteration"] for r in got] == [1, 2]
    assert got[0]["episode_len_mean"] is None
    assert got[1]["episode_return_mean"] is None
    assert got[0]["learner"]["default_policy"]["total_loss"] == 1.5
    assert got[0]["timers"] == {"sample": 0.5, "learn": 0.25}


def test_numpy_values(tmp_path: Path) -> None:
    np = pytest.importorskip("numpy")
    with ResultLogger(tmp_path, tensorboard=False) as logger:
        logger.log(
            {"timesteps_total": np.int64(5), "x": np.float32(0.5), "y": np.float64("nan"), "a": np.ones(2)}
        )
    assert read_results(tmp_path) == [{"timesteps_total": 5, "x": 0.5, "y": None, "a": [1.0, 1.0]}]


def test_truncated_last_line_is_skipped_and_resume_appends_cleanly(tmp_path: Path) -> None:
    with ResultLogger(tmp_path, tensorboard=False) as logger:
        logger.log(result(1))
        logger.log(result(2))
    path = tmp_path / "result.json"
    with path.open("a") as f:
        f.write('{"training_iteration": 3, "timesteps_t')  # the trainer died mid-write
    assert [r["training_iteration"] for r in read_results(tmp_path)] == [1, 2]

    # A resumed run appends to the same file: the partial line is dropped, not glued to the next one.
    with ResultLogger(tmp_path, tensorboard=False) as logger:
        logger.log(result(3))
    assert [r["training_iteration"] for r in read_results(tmp_path)] == [1, 2, 3]
    assert len(path.read_text().splitlines()) == 3


def test_missing_and_garbage(tmp_path: Path) -> None:
    assert read_results(tmp_path) == []
    (tmp_path / "result.json").write_text('{"a": 1}\nnot json\n[1, 2]\n\n{"a": 2}\n')
    assert read_results(tmp_path) == [{"a": 1}, {"a": 2}]


def test_flatten_numeric() -> None:
    flat = dict(flatten_numeric(result(2)))
    assert flat["learner/default_policy/total_loss"] == 0.75
    assert flat["timers/sample"] == 0.5
    assert "done" not in flat  # bools are not scalars
    assert "episode_len_mean" not in flat  # NaN
    assert "learner/default_policy/note" not in flat
    assert all(math.isfinite(v) for v in flat.values())


def test_tensorboard_scalars(tmp_path: Path) -> None:
    event_accumulator = pytest.importorskip("tensorboard.backend.event_processing.event_accumulator")
    with ResultLogger(tmp_path) as logger:
        logger.log(result(1, ret=10.0))
        logger.log(result(2, ret=20.0))
    assert list(tmp_path.glob("events.out.tfevents.*"))
    acc = event_accumulator.EventAccumulator(str(tmp_path))
    acc.Reload()
    tags = acc.Tags()["scalars"]
    assert "episode_return_mean" in tags
    assert "learner/default_policy/total_loss" in tags
    assert "evaluation/episode_return_mean" in tags
    assert "episode_len_mean" not in tags
    events = acc.Scalars("episode_return_mean")
    assert [(e.step, e.value) for e in events] == [(1000, 10.0), (2000, 20.0)]


def test_log_after_close_raises(tmp_path: Path) -> None:
    logger = ResultLogger(tmp_path, tensorboard=False)
    logger.close()
    logger.close()  # idempotent
    with pytest.raises(ValueError, match="closed"):
        logger.log(result(1))
