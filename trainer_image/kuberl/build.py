"""job -> Algorithm: the one place that turns a parsed job into the Algorithm that trains it."""

from __future__ import annotations

import importlib
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from kuberl.algorithms.base import Algorithm
from kuberl.spec import RLTrainingJob, load_job, parse_job


def algorithm_class(name: str) -> type[Algorithm]:
    """The Algorithm named by the config model's `implementation`, imported lazily so one algorithm's
    dependencies never load for another."""
    from kuberl.spec.algorithms import CONFIG_MODELS

    module, _, attr = CONFIG_MODELS[name].implementation.partition(":")
    cls = getattr(importlib.import_module(module), attr)
    assert issubclass(cls, Algorithm)
    return cls


def build_algorithm(
    job: RLTrainingJob | Mapping[str, Any] | str | Path, *, run_dir: Path | None = None
) -> Algorithm:
    """Build an algorithm from a job object, a raw document, or a YAML path."""
    if isinstance(job, str | Path):
        job = load_job(job)
    elif not isinstance(job, RLTrainingJob):
        job = parse_job(job)
    if job.spec.multi_agent is not None:
        from kuberl.multi_agent.algorithm import MultiAgentAlgorithm

        return MultiAgentAlgorithm(job, run_dir=run_dir)
    return algorithm_class(job.spec.algorithm)(job, run_dir=run_dir)
