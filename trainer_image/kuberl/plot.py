"""Learning-curve plots of a run directory (``kuberl plot RUN``).

Draws with matplotlib's Agg canvas directly (no pyplot, no global backend switch), and imports
matplotlib only when a plot is made, so ``import kuberl.plot`` stays light.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from kuberl.results import RESULT_FILE, read_results

__all__ = ["plot_run"]

_LABELS = {
    "timesteps_total": "Environment steps",
    "training_iteration": "Training iteration",
    "time_total_s": "Wall-clock time (s)",
    "episodes_total": "Episodes",
    "episode_return_mean": "Episode return (mean)",
    "episode_len_mean": "Episode length (mean)",
}


def _get(result: Mapping[str, Any], key: str) -> float | None:
    """A finite number at ``key`` (nested keys joined by "/"), or None."""
    value: Any = result
    for part in key.split("/"):
        if not isinstance(value, Mapping) or part not in value:
            return None
        value = value[part]
    if value is None or isinstance(value, bool | str):
        return None
    try:
        f = float(value)
    except (TypeError, ValueError):
        return None
    return f if math.isfinite(f) else None


def _series(results: Sequence[Mapping[str, Any]], x: str, y: str) -> tuple[list[float], list[float]]:
    xs: list[float] = []
    ys: list[float] = []
    for r in results:
        xv, yv = _get(r, x), _get(r, y)
        if xv is not None and yv is not None:
            xs.append(xv)
            ys.append(yv)
    return xs, ys


def plot_run(
    run_dir: Path,
    out: Path | None = None,
    *,
    x: str = "timesteps_total",
    y: str = "episode_return_mean",
) -> Path:
    """Plot ``y`` against ``x`` from the run's ``result.json`` into a PNG and return its path.

    ``run_dir`` is the run directory (or its ``result.json``); ``out`` defaults to
    ``run_dir/learning_curve.png``. Nested keys are joined by "/" (e.g. ``learner/default_policy/kl``).
    When results carry ``evaluation/<y>``, the evaluation curve is drawn too; for the default ``y`` the
    band between ``episode_return_min`` and ``episode_return_max`` is shaded.

    Raises ValueError when the run has no results, or none with both ``x`` and ``y``.
    """
    run_dir = Path(run_dir)
    if run_dir.is_file():
        run_dir = run_dir.parent
    results = read_results(run_dir)
    if not results:
        raise ValueError(f"run {run_dir} has no results (no lines in {run_dir / RESULT_FILE})")
    xs, ys = _series(results, x, y)
    eval_xs, eval_ys = _series(results, x, f"evaluation/{y}")
    if not xs and not eval_xs:
        raise ValueError(
            f"run {run_dir} has {len(results)} results but none with numeric {x!r} and {y!r} "
            "(no finished episode yet?)"
        )
    out = Path(out) if out is not None else run_dir / "learning_curve.png"
    out.parent.mkdir(parents=True, exist_ok=True)

    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(8, 5), dpi=100, layout="constrained")
    FigureCanvasAgg(fig)
    ax = fig.add_subplot()
    if y == "episode_return_mean":
        band = [(_get(r, x), _get(r, "episode_return_min"), _get(r, "episode_return_max")) for r in results]
        points = [(bx, lo, hi) for bx, lo, hi in band if bx is not None and lo is not None and hi is not None]
        if points:
            ax.fill_between(
                [p[0] for p in points],
                [p[1] for p in points],
                [p[2] for p in points],
                alpha=0.2,
                color="C0",
                linewidth=0,
                label="min to max",
            )
    if xs:
        ax.plot(xs, ys, color="C0", linewidth=1.8, label="training")
    if eval_xs:
        ax.plot(eval_xs, eval_ys, color="C1", linewidth=1.8, marker="o", markersize=4, label="evaluation")
    ax.set_title(run_dir.name)
    ax.set_xlabel(_LABELS.get(x, x))
    ax.set_ylabel(_LABELS.get(y, y))
    ax.grid(True, alpha=0.3)
    ax.ticklabel_format(axis="x", style="sci", scilimits=(-3, 5), useMathText=True)
    if eval_xs or len(ax.get_legend_handles_labels()[0]) > 1:
        ax.legend(loc="best")
    fig.savefig(out, format="png")
    return out
