"""Per-run result logs: ``params.json``, ``result.json`` (one JSON object per line) and TensorBoard scalars.

A run directory (default ``./runs/<name>/``) holds::

    params.json   the run's configuration (pretty JSON)
    result.json   one line per training iteration, flushed as written; NaN and infinities become null
    events.out.tfevents.*   TensorBoard scalars: every numeric leaf, nested keys joined by "/",
                            step = timesteps_total; each hist_stats list as a histogram
                            (hist_stats/<name>)

tensorboardX is imported lazily, so ``import kuberl.results`` stays light (no torch, no ray).
"""

from __future__ import annotations

import json
import logging
import math
import os
import sys
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any, TypedDict

__all__ = [
    "PARAMS_FILE",
    "RESULT_FILE",
    "EnvRunnerHealth",
    "ResultLogger",
    "TrainResult",
    "flatten_numeric",
    "read_results",
    "to_jsonable",
]

log = logging.getLogger(__name__)

RESULT_FILE = "result.json"
PARAMS_FILE = "params.json"


class EnvRunnerHealth(TypedDict):
    num_healthy: int
    restarts_total: int
    env_restarts_total: int


class TrainResult(TypedDict, total=False):
    """What `Algorithm.train()` returns for one iteration (RLlib's familiar keys): one line of
    result.json, the metrics the trainer exports (kuberl.metrics) and what Tune reports. Episode
    statistics are over the last 100 episodes (None before the first one ends)."""

    training_iteration: int
    timesteps_total: int
    num_env_steps_sampled: int
    num_env_steps_sampled_lifetime: int
    num_env_steps_trained: int
    num_env_steps_trained_lifetime: int
    episodes_total: int
    episodes_this_iter: int
    episode_return_mean: float | None
    episode_return_min: float | None
    episode_return_max: float | None
    episode_len_mean: float | None
    time_this_iter_s: float
    time_total_s: float
    env_steps_per_s: float
    timers: dict[str, float]
    # Learner statistics per trained policy ("default_policy" for single-agent jobs).
    learner: dict[str, dict[str, float]]
    env_runners: EnvRunnerHealth
    # Every evaluation.interval iterations: Algorithm.evaluate()'s statistics (parallelToTraining: those of
    # the evaluation that finished since the last result, plus weights_iteration).
    evaluation: dict[str, Any]
    # External simulators: the policy server's counters.
    policy_server: dict[str, Any]
    # Offline algorithms, with each evaluation: off-policy estimates from the logged episodes.
    off_policy_estimation: dict[str, Any]
    # Multi-agent: per-policy agent-episode statistics, and self-play rates.
    policies: dict[str, dict[str, Any]]
    self_play: dict[str, Any]
    # config.callbacks: name_mean/_min/_max of each custom metric over the episodes that ended this
    # iteration; hist_stats: those episodes' returns and lengths, and the callbacks' hist_data lists.
    custom_metrics: dict[str, float]
    hist_stats: dict[str, list[float]]


def to_jsonable(value: Any) -> Any:
    """``value`` as plain JSON data: non-finite floats → None, numpy scalars/arrays → Python values,
    pydantic models → dicts, paths and other objects → strings."""
    if value is None or isinstance(value, bool | int | str):
        return value
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, Mapping):
        return {str(k): to_jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple | set | frozenset):
        return [to_jsonable(v) for v in value]
    if hasattr(value, "model_dump"):  # pydantic
        return to_jsonable(value.model_dump(mode="json"))
    if hasattr(value, "tolist"):  # numpy scalars and arrays, torch tensors
        try:
            return to_jsonable(value.tolist())
        except (TypeError, ValueError):
            pass
    if hasattr(value, "item"):
        try:
            return to_jsonable(value.item())
        except (TypeError, ValueError):
            pass
    if isinstance(value, os.PathLike):
        return os.fspath(value)
    return str(value)


def flatten_numeric(value: Mapping[str, Any], prefix: str = "") -> Iterator[tuple[str, float]]:
    """Every finite numeric leaf of a nested mapping as ``("a/b/c", value)`` (bools excluded)."""
    for key, v in value.items():
        name = f"{prefix}{key}"
        if isinstance(v, Mapping):
            yield from flatten_numeric(v, prefix=f"{name}/")
        elif isinstance(v, bool) or v is None or isinstance(v, str | bytes):
            continue
        else:
            try:
                f = float(v)
            except (TypeError, ValueError):
                continue
            if math.isfinite(f):
                yield name, f


def _iteration_of(line: str) -> float:
    """A result line's training_iteration (infinity for a line that is not one: it goes on rewind)."""
    try:
        return float(json.loads(line)["training_iteration"])
    except (ValueError, KeyError, TypeError):
        return float("inf")


def _trim_partial_line(path: Path) -> None:
    """Drop a truncated last line (a crash mid-write) so appended lines start on a line of their own."""
    try:
        size = path.stat().st_size
    except FileNotFoundError:
        return
    if size == 0:
        return
    with path.open("rb+") as f:
        f.seek(-1, os.SEEK_END)
        if f.read(1) == b"\n":
            return
        # Find the last newline; everything after it is the partial line.
        pos = size
        chunk = 4096
        keep = 0
        while pos > 0:
            start = max(0, pos - chunk)
            f.seek(start)
            data = f.read(pos - start)
            idx = data.rfind(b"\n")
            if idx != -1:
                keep = start + idx + 1
                break
            pos = start
        log.warning("%s: dropping a truncated last line (%d bytes)", path, size - keep)
        f.truncate(keep)


def _summary_writer() -> Any:
    """tensorboardX's SummaryWriter class, imported without boto3. tensorboardX's record writer imports
    boto3 when it is installed (kuberl's S3 store needs it) only to offer s3:// log directories; that
    import is about a third of torch's, paid by every run, while the event files always go to the local
    run directory. Blocking the name for the one import makes tensorboardX take its no-S3 branch; a
    process that already imported either keeps it as it is."""
    if "tensorboardX" in sys.modules or "boto3" in sys.modules:
        from tensorboardX import SummaryWriter

        return SummaryWriter
    sys.modules["boto3"] = None  # type: ignore[assignment]  # `import boto3` raises ImportError
    try:
        from tensorboardX import SummaryWriter
    finally:
        del sys.modules["boto3"]
    return SummaryWriter


class ResultLogger:
    """Writes a run's ``params.json``, ``result.json`` lines and TensorBoard scalars into ``run_dir``."""

    def __init__(self, run_dir: Path, *, tensorboard: bool = True) -> None:
        self.run_dir = Path(run_dir)
        self.run_dir.mkdir(parents=True, exist_ok=True)
        self.result_path = self.run_dir / RESULT_FILE
        _trim_partial_line(self.result_path)  # a resumed run appends to the same file
        self._file = self.result_path.open("a", encoding="utf-8")
        self._writer: Any = None
        if tensorboard:
            self._writer = _summary_writer()(str(self.run_dir), flush_secs=10)

    def write_params(self, params: Mapping[str, Any]) -> None:
        """Write ``run_dir/params.json`` (pretty JSON, keys sorted)."""
        text = json.dumps(to_jsonable(params), indent=2, sort_keys=True, allow_nan=False)
        tmp = self.run_dir / f".{PARAMS_FILE}.tmp"
        tmp.write_text(text + "\n", encoding="utf-8")
        tmp.replace(self.run_dir / PARAMS_FILE)

    def log(self, result: Mapping[str, Any]) -> None:
        """Append ``result`` as one JSON line (flushed) and its numeric leaves as TensorBoard scalars."""
        if self._file.closed:
            raise ValueError("ResultLogger is closed")
        line = json.dumps(to_jsonable(result), allow_nan=False)
        self._file.write(line + "\n")
        self._file.flush()
        if self._writer is not None:
            step_value = result.get("timesteps_total", result.get("training_iteration"))
            try:
                step = int(step_value) if step_value is not None else None
            except (TypeError, ValueError):
                step = None
            for tag, v in flatten_numeric(result):
                self._writer.add_scalar(tag, v, global_step=step)
            hists = result.get("hist_stats")
            if isinstance(hists, Mapping):
                import numpy as np

                for name, values in hists.items():
                    finite = [float(x) for x in values if isinstance(x, int | float) and math.isfinite(x)]
                    if finite:  # tensorboardX refuses an empty histogram
                        self._writer.add_histogram(f"hist_stats/{name}", np.asarray(finite), global_step=step)

    def rewind(self, *, iteration: int, step: int) -> int:
        """A resumed run continues from a checkpoint at `iteration` (`step` env steps): drop the results
        a crashed attempt logged after it, so redone iterations appear once in result.json, and have
        TensorBoard purge its events past `step` (tensorboardX's purge_step). Returns the lines dropped."""
        self._file.close()
        lines = self.result_path.read_text(encoding="utf-8").splitlines(keepends=True)
        keep = [line for line in lines if _iteration_of(line) <= iteration]
        if len(keep) != len(lines):
            tmp = self.run_dir / f".{RESULT_FILE}.tmp"
            tmp.write_text("".join(keep), encoding="utf-8")
            tmp.replace(self.result_path)
        self._file = self.result_path.open("a", encoding="utf-8")
        if self._writer is not None:
            self._writer.close()
            self._writer = _summary_writer()(str(self.run_dir), flush_secs=10, purge_step=step + 1)
        return len(lines) - len(keep)

    def flush(self) -> None:
        if not self._file.closed:
            self._file.flush()
        if self._writer is not None:
            self._writer.flush()

    def close(self) -> None:
        if not self._file.closed:
            self._file.close()
        if self._writer is not None:
            self._writer.close()
            self._writer = None

    def __enter__(self) -> ResultLogger:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def read_results(path: Path) -> list[dict[str, Any]]:
    """The results of a run: ``path`` is the run directory or its ``result.json``.

    A truncated last line (the trainer died mid-write) is skipped; so is any other line that is not a
    JSON object, with a warning. A missing file reads as no results."""
    path = Path(path)
    if path.is_dir():
        path = path / RESULT_FILE
    try:
        text = path.read_text(encoding="utf-8", errors="replace")
    except FileNotFoundError:
        return []
    lines = text.split("\n")
    results: list[dict[str, Any]] = []
    for number, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        try:
            obj = json.loads(line)
        except json.JSONDecodeError:
            if number == len(lines):  # no newline after it: a write cut short
                log.debug("%s: skipping a truncated last line", path)
            else:
                log.warning("%s:%d: skipping a line that is not valid JSON", path, number)
            continue
        if isinstance(obj, dict):
            results.append(obj)
        else:
            log.warning("%s:%d: skipping a line that is not a JSON object", path, number)
    return results
