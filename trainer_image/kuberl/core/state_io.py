"""Algorithm state to and from checkpoint bytes, without ever running code found in the data.

`torch.load(weights_only=False)` unpickles arbitrary objects, so anyone who can write to a checkpoint
store could run code in every trainer that resumes from it (the sha256 manifest proves integrity, not
authenticity). kuberl's state is tensors, numbers, strings, lists, dicts and numpy arrays (replay
buffers, observation filters, RNG states), so it loads with `weights_only=True` and an allow-list of
exactly the numpy globals those arrays need; anything else in a pickle is refused before it runs.
See https://pytorch.org/docs/stable/notes/serialization.html#weights-only
"""

from __future__ import annotations

import importlib
import io
import pickle
from collections.abc import Mapping
from typing import Any

import numpy as np
import torch

from kuberl.checkpoint.errors import UnsafeCheckpointError

try:  # numpy >= 2 moved the pickling helpers to numpy._core
    _multiarray: Any = importlib.import_module("numpy._core.multiarray")
except ImportError:  # pragma: no cover - numpy 1.26
    _multiarray = importlib.import_module("numpy.core.multiarray")

# numpy arrays pickle through these; the dtype classes (Float32DType, …) are needed per dtype.
_NUMPY_DTYPES = (
    np.bool_,
    np.int8,
    np.int16,
    np.int32,
    np.int64,
    np.uint8,
    np.uint16,
    np.uint32,
    np.uint64,
    np.float16,
    np.float32,
    np.float64,
)
SAFE_GLOBALS: list[Any] = [
    _multiarray._reconstruct,
    np.ndarray,
    np.dtype,
    *(type(np.dtype(t)) for t in _NUMPY_DTYPES),
    _multiarray.scalar,
]


def dumps_state(state: Mapping[str, Any]) -> bytes:
    """Serialise an algorithm's state (what `loads_state` accepts back)."""
    buf = io.BytesIO()
    torch.save(dict(state), buf)
    return buf.getvalue()


def loads_state(data: bytes, *, where: str) -> dict[str, Any]:
    """Load state written by `dumps_state`; refuse (UnsafeCheckpointError naming `where`) any pickle
    that needs a global outside the allow-list, before that global is imported or called."""
    try:
        with torch.serialization.safe_globals(SAFE_GLOBALS):
            state = torch.load(io.BytesIO(data), map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as exc:
        # torch's message is a page of advice to disable the check; name what was refused instead.
        first = str(exc).split("\n")[0] if "GLOBAL" not in str(exc) else _refused(str(exc))
        raise UnsafeCheckpointError(
            f"{where}: refused to load: it holds objects other than tensors, numbers, strings, "
            f"containers and numpy arrays ({first}); a checkpoint written by kuberl never does, so "
            "it was altered or written by something else"
        ) from None
    except (RuntimeError, EOFError, ValueError) as exc:
        raise UnsafeCheckpointError(f"{where}: not a kuberl state file: {exc}") from None
    if not isinstance(state, dict):
        raise UnsafeCheckpointError(f"{where}: not a kuberl state file (a {type(state).__name__})")
    return state


def _refused(message: str) -> str:
    for line in message.splitlines():
        if "GLOBAL" in line or "Unsupported global" in line:
            return line.strip()[:200]
    return message.splitlines()[0][:200]


def non_finite(value: Any, path: str = "") -> list[str]:
    """Paths of floating-point tensors/arrays (in nested dicts, lists and tuples) holding NaN or ±inf.

    Used before a checkpoint is written: a run whose weights diverged must fail rather than store them
    as the "newest complete" checkpoint that every retry then resumes from (review M1)."""
    if isinstance(value, torch.Tensor):
        if value.is_floating_point() and not bool(torch.isfinite(value).all()):
            return [path or "."]
        return []
    if isinstance(value, np.ndarray):
        if np.issubdtype(value.dtype, np.floating) and not bool(np.isfinite(value).all()):
            return [path or "."]
        return []
    if isinstance(value, Mapping):
        return [p for k, v in value.items() for p in non_finite(v, f"{path}.{k}" if path else str(k))]
    if isinstance(value, list | tuple):
        return [p for i, v in enumerate(value) for p in non_finite(v, f"{path}[{i}]")]
    return []
