"""Piecewise-linear schedules over environment steps (RLlib's `lr_schedule` format)."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np


def piecewise_linear(schedule: Sequence[tuple[int, float]], t: int) -> float:
    """Interpolate [[t0, v0], [t1, v1], …] at t; constant before the first and after the last point."""
    steps = np.asarray([p[0] for p in schedule], dtype=np.float64)
    values = np.asarray([p[1] for p in schedule], dtype=np.float64)
    return float(np.interp(t, steps, values))
