"""Shared by the learning tests: load a tuned example with the test's seed, train to a threshold within
a budget, and report how it went. Budgets and seeds checked are in each algorithm's docs page."""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from kuberl.algorithms.base import Algorithm
from kuberl.build import build_algorithm
from kuberl.spec import apply_overrides, read_document

ROOT = Path(__file__).resolve().parents[2]
SEED = int(os.environ.get("KUBERL_TEST_SEED", "0"))


def example(name: str, tmp_path: Path, *overrides: str) -> dict[str, Any]:
    """examples/<name> with the test seed and a temporary run directory."""
    return apply_overrides(
        read_document(ROOT / "examples" / name), [f"seed={SEED}", f"runDir={tmp_path}", *overrides]
    )


@dataclass
class Outcome:
    best: float = float("-inf")
    steps: int = 0
    results: list[dict[str, Any]] = field(default_factory=list)
    evaluations: list[tuple[int, float]] = field(default_factory=list)

    def describe(self) -> str:
        evals = [(s, round(r)) for s, r in self.evaluations]
        return f"best {self.best:.1f} after {self.steps} steps" + (f"; evaluations {evals}" if evals else "")


def train_until_return(doc: dict[str, Any], *, threshold: float, budget: int) -> Outcome:
    """Train until the mean return of the last 100 training episodes reaches `threshold`."""
    out = Outcome()
    algo = build_algorithm(doc)
    try:
        while algo.timesteps < budget and out.best < threshold:
            result = algo.train()
            out.results.append(result)
            if result["episode_return_mean"] is not None:
                out.best = max(out.best, result["episode_return_mean"])
        out.steps = algo.timesteps
        return out
    finally:
        algo.stop()


def train_until_evaluation(
    doc: dict[str, Any],
    *,
    threshold: float,
    budget: int,
    every: int,
    first: int = 0,
    ready: Callable[[Algorithm, dict[str, Any]], bool] = lambda algo, result: True,
) -> Outcome:
    """Train until a 10-episode evaluation of the deterministic policy reaches `threshold`; evaluate every
    `every` env steps after `first` steps, once `ready(algo, result)` (evaluating costs time too)."""
    out = Outcome()
    algo = build_algorithm(doc)
    next_eval = first + every
    try:
        while algo.timesteps < budget and out.best < threshold:
            result = algo.train()
            if algo.timesteps >= next_eval and ready(algo, result):
                next_eval = algo.timesteps + every
                ret = algo.evaluate(10, explore=False)["episode_return_mean"]
                out.evaluations.append((algo.timesteps, ret))
                out.best = max(out.best, ret)
        out.steps = algo.timesteps
        return out
    finally:
        algo.stop()
