"""What a sweep found: one row per trial (its values, iterations, metric, status, checkpoint), the best
trial, `tune_results.json`, and the table `kuberl run` prints."""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from kuberl.tune.experiment import TuneOutcome


@dataclass
class TrialRow:
    trial_id: str
    params: dict[str, Any]
    status: str
    iterations: int
    timesteps: int
    last: float | None  # the metric in the trial's last result (how Tune ranks trials: scope "last")
    best: float | None  # the best value the trial ever reported
    checkpoint: str | None  # its newest checkpoint: a kuberl checkpoint root (`kuberl evaluate` reads it)
    error: str | None = None


def _finite(x: Any) -> float | None:
    return float(x) if isinstance(x, int | float) and math.isfinite(x) else None


def best_of(values: list[Any], *, mode: str) -> float | None:
    finite = [v for v in (_finite(x) for x in values) if v is not None]
    if not finite:
        return None
    return max(finite) if mode == "max" else min(finite)


def checkpoint_uri(checkpoint: Any) -> str | None:
    """A Tune checkpoint as a URI: s3://… on S3 storage, else a local path."""
    if checkpoint is None:
        return None
    fs = getattr(checkpoint, "filesystem", None)
    if fs is not None and getattr(fs, "type_name", "") == "s3":
        return f"s3://{checkpoint.path}"
    return str(checkpoint.path)


def trial_rows(results: Any, *, metric: str, mode: str, states: dict[str, str]) -> list[TrialRow]:
    """Rows from Tune's ResultGrid; `states` holds each trial's final status (from the callback)."""
    rows: list[TrialRow] = []
    for result in results:
        m = result.metrics or {}
        trial_id = str(m.get("trial_id") or Path(str(result.path)).name)
        df = result.metrics_dataframe
        history = list(df[metric]) if df is not None and metric in df.columns else []
        error = str(result.error).strip().splitlines()[-1] if result.error else None
        rows.append(
            TrialRow(
                trial_id=trial_id,
                params=dict(result.config or {}),
                status=states.get(trial_id, "ERROR" if error else "TERMINATED"),
                iterations=int(m.get("training_iteration", 0)),
                timesteps=int(m.get("timesteps_total", 0)),
                last=_finite(m.get(metric)),
                best=best_of(history, mode=mode),
                checkpoint=checkpoint_uri(result.checkpoint),
                error=error,
            )
        )
    return sorted(rows, key=lambda r: r.trial_id)


def pick_best(rows: list[TrialRow], *, mode: str) -> TrialRow | None:
    """The trial whose last result is best (Tune's get_best_result with scope "last")."""
    ranked = [r for r in rows if r.last is not None]
    if not ranked:
        return None
    sign = 1.0 if mode == "max" else -1.0
    return max(ranked, key=lambda r: sign * (r.last or 0.0))


def results_document(outcome: TuneOutcome) -> dict[str, Any]:
    return {
        "experiment_path": outcome.experiment_path,
        "metric": outcome.metric,
        "mode": outcome.mode,
        "interrupted": outcome.interrupted,
        "best": asdict(outcome.best) if outcome.best is not None else None,
        "trials": [asdict(r) for r in outcome.trials],
    }


def write_results(path: Path, outcome: TuneOutcome) -> None:
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(results_document(outcome), indent=2, default=str))
    tmp.replace(path)  # a reader never sees half a file


def _value(v: Any) -> str:
    if isinstance(v, float):
        return f"{v:.4g}"
    return json.dumps(v) if not isinstance(v, str) else v


def _status(row: TrialRow) -> str:
    """Tune's trial status, short: a TERMINATED trial is done (by spec.stop, ASHA or PBT's end)."""
    if row.error:
        return f"error: {row.error}"
    return "done" if row.status == "TERMINATED" else row.status.lower()


def _metric(x: float | None) -> str:
    return "—" if x is None else f"{x:.1f}"


def print_outcome(console: Any, outcome: TuneOutcome) -> None:
    """The trials as a rich table, then the best trial's values and checkpoint."""
    from rich.table import Table

    params = sorted({k for r in outcome.trials for k in r.params})
    table = Table(title=f"Tune trials — {outcome.metric} ({outcome.mode})")
    table.add_column("trial", no_wrap=True)
    for p in params:
        # the last path component keeps narrow terminals readable; the summary line names the full path
        table.add_column(p.rsplit(".", 1)[-1], justify="right", no_wrap=True)
    for name in ("iter", "steps", "last", "best", "status"):
        table.add_column(name, justify="left" if name == "status" else "right", no_wrap=True)
    best_id = outcome.best.trial_id if outcome.best else None
    for r in outcome.trials:
        table.add_row(
            r.trial_id + (" ★" if r.trial_id == best_id else ""),
            *[_value(r.params[p]) if p in r.params else "—" for p in params],
            str(r.iterations),
            f"{r.timesteps:,}",
            _metric(r.last),
            _metric(r.best),
            _status(r),
        )
    console.print(table)
    if outcome.best is not None:
        b = outcome.best
        values = ", ".join(f"{k}={_value(v)}" for k, v in sorted(b.params.items()))
        console.print(
            f"[bold]best trial[/] {b.trial_id}: {outcome.metric} {b.last:.2f} with {values or 'the spec as is'}"
        )
        if b.checkpoint:
            console.print(f"best checkpoint: {b.checkpoint}")
    else:
        console.print(f"[bold]no trial reported {outcome.metric}[/]")
    if outcome.interrupted:
        console.print(
            "[bold]interrupted[/]: trials were checkpointed; `kuberl run` again (resume: auto) continues them"
        )
    console.print(f"experiment: {outcome.experiment_path}")
    console.print(f"results: {outcome.results_file}")
