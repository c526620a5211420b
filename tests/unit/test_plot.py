"""kuberl.plot: learning-curve PNGs of a run directory."""

from __future__ import annotations

from pathlib import Path

import pytest

from kuberl.plot import plot_run
from kuberl.results import ResultLogger

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def write_run(run: Path, n: int = 30, *, evaluation: bool = True) -> None:
    with ResultLogger(run, tensorboard=False) as logger:
        for i in range(1, n + 1):
            ret = None if i == 1 else 10.0 + 180.0 * (1 - 0.9**i)
            r: dict[str, object] = {
                "training_iteration": i,
                "timesteps_total": 4000 * i,
                "episode_return_mean": ret,
                "episode_return_min": None if ret is None else ret * 0.6,
                "episode_return_max": None if ret is None else min(500.0, ret * 1.4),
            }
            if evaluation and i % 5 == 0:
                r["evaluation"] = {"episode_return_mean": (ret or 0.0) * 1.1}
            logger.log(r)


def is_png(path: Path) -> bool:
    return path.stat().st_size > len(PNG_MAGIC) and path.read_bytes()[:8] == PNG_MAGIC


def test_plot_default_output(tmp_path: Path) -> None:
    run = tmp_path / "ppo-cartpole"
    write_run(run)
    out = plot_run(run)
    assert out == run / "learning_curve.png"
    assert is_png(out)


def test_plot_custom_axes_and_output(tmp_path: Path) -> None:
    run = tmp_path / "run"
    write_run(run, evaluation=False)
    out = plot_run(run / "result.json", tmp_path / "plots" / "iters.png", x="training_iteration")
    assert out == tmp_path / "plots" / "iters.png"
    assert is_png(out)


def test_plot_empty_run_raises(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="no results"):
        plot_run(tmp_path)
    (tmp_path / "result.json").write_text("")
    with pytest.raises(ValueError, match="no results"):
        plot_run(tmp_path)
    assert not (tmp_path / "learning_curve.png").exists()


def test_plot_missing_metric_raises(tmp_path: Path) -> None:
    write_run(tmp_path, n=3)
    with pytest.raises(ValueError, match="none with numeric"):
        plot_run(tmp_path, y="no_such_metric")
