"""Gymnasium spaces as JSON (so a local-mode client can rebuild the policy), and validation of the
observations and actions clients send (a wrong shape is the client's error: a 4xx, never a 500)."""

from __future__ import annotations

import math
from typing import Any

import gymnasium as gym
import numpy as np


class InvalidValueError(ValueError):
    """An observation or action that does not fit the env's space; the message says why."""


def space_to_json(space: gym.Space[Any]) -> dict[str, Any]:
    """Box, Discrete and MultiDiscrete: the spaces an MLP policy over a flat vector handles."""
    if isinstance(space, gym.spaces.Box):
        return {
            "type": "Box",
            "shape": list(space.shape),
            "low": _finite_or_none(space.low).tolist(),
            "high": _finite_or_none(space.high).tolist(),
            "dtype": str(space.dtype),
        }
    if isinstance(space, gym.spaces.Discrete):
        return {"type": "Discrete", "n": int(space.n), "start": int(space.start)}
    if isinstance(space, gym.spaces.MultiDiscrete):
        return {"type": "MultiDiscrete", "nvec": np.asarray(space.nvec).tolist()}
    raise NotImplementedError(
        f"external simulators support Box, Discrete and MultiDiscrete spaces, not {space}"
    )


def space_from_json(doc: dict[str, Any]) -> gym.Space[Any]:
    kind = doc["type"]
    if kind == "Box":
        shape = tuple(doc["shape"])
        dtype = np.dtype(doc["dtype"])
        # JSON has no infinity: unbounded dimensions travel as null.
        low = np.array([-np.inf if x is None else x for x in np.ravel(np.array(doc["low"], dtype=object))])
        high = np.array([np.inf if x is None else x for x in np.ravel(np.array(doc["high"], dtype=object))])
        return gym.spaces.Box(
            low=low.astype(dtype).reshape(shape), high=high.astype(dtype).reshape(shape), dtype=dtype
        )
    if kind == "Discrete":
        return gym.spaces.Discrete(int(doc["n"]), start=int(doc.get("start", 0)))
    if kind == "MultiDiscrete":
        return gym.spaces.MultiDiscrete(doc["nvec"])
    raise ValueError(f"unknown space type {kind!r}")


def _finite_or_none(a: np.ndarray) -> np.ndarray:
    out = np.asarray(a, dtype=np.float64).astype(object)
    out[~np.isfinite(np.asarray(a, dtype=np.float64))] = None
    return out


def _check_numbers(value: Any, what: str) -> None:
    """JSON numbers only: numpy would turn "0" and true into 0.0 (review L8), so look at every leaf."""
    stack = [value]
    while stack:
        v = stack.pop()
        if isinstance(v, list):
            stack.extend(v)
        elif isinstance(v, bool) or not isinstance(v, int | float):
            raise InvalidValueError(
                f"{what} must be a number or a (nested) list of numbers, got {type(v).__name__} {v!r:.40}"
            )


def _numeric_array(value: Any, what: str) -> np.ndarray:
    _check_numbers(value, what)
    try:
        arr = np.asarray(value, dtype=np.float64)
    except (TypeError, ValueError, OverflowError) as exc:
        raise InvalidValueError(
            f"{what} must be a number or a rectangular (nested) list of numbers ({exc})"
        ) from None
    if not np.all(np.isfinite(arr)):
        raise InvalidValueError(f"{what} contains a non-finite number")
    return arr


def validate_observation(space: gym.Space[Any], value: Any) -> np.ndarray:
    """The observation as an array of the space's shape; InvalidValueError says what is wrong."""
    arr = _numeric_array(value, "observation")
    if isinstance(space, gym.spaces.Box):
        if arr.shape != space.shape:
            raise InvalidValueError(
                f"observation has shape {list(arr.shape)}, the env's space has {list(space.shape)}"
            )
        return _cast(arr, space.dtype, "observation")
    if isinstance(space, gym.spaces.Discrete):
        return np.asarray(_integer_in(arr, space.start, space.start + space.n, "observation"), dtype=np.int64)
    if isinstance(space, gym.spaces.MultiDiscrete):
        return _multi_discrete(arr, space, "observation")
    raise InvalidValueError(f"observation space {space} is not supported")


def validate_action(space: gym.Space[Any], value: Any) -> np.ndarray:
    """The action as the policy's action array: an int64 scalar (Discrete), int64 vector
    (MultiDiscrete) or float32 array of the space's shape (Box, clipped later where it is applied)."""
    arr = _numeric_array(value, "action")
    if isinstance(space, gym.spaces.Discrete):
        return np.asarray(_integer_in(arr, space.start, space.start + space.n, "action") - space.start)
    if isinstance(space, gym.spaces.MultiDiscrete):
        # The policy's flat layout (kuberl.core.action_spaces): one index per dimension, nvec flattened.
        return _multi_discrete(arr, space, "action").reshape(-1)
    if isinstance(space, gym.spaces.Box):
        if arr.shape != space.shape:
            raise InvalidValueError(
                f"action has shape {list(arr.shape)}, the env's action space has {list(space.shape)}"
            )
        return _cast(arr, np.dtype(np.float32), "action")
    raise InvalidValueError(f"action space {space} is not supported")


def _cast(arr: np.ndarray, dtype: np.dtype[Any], what: str) -> np.ndarray:
    """Cast to the space's dtype, refusing numbers it cannot hold (1e300 would become inf in float32)."""
    if dtype.kind == "f" and np.any(np.abs(arr) > np.finfo(dtype).max):
        raise InvalidValueError(f"{what} holds a number beyond the {dtype} range")
    return arr.astype(dtype)


def _integer_in(arr: np.ndarray, low: int, high: int, what: str) -> int:
    if arr.shape != ():
        raise InvalidValueError(f"{what} must be a single integer, got shape {list(arr.shape)}")
    x = float(arr)
    if x != math.floor(x):
        raise InvalidValueError(f"{what} must be an integer, got {x}")
    if not low <= x < high:
        raise InvalidValueError(f"{what} {int(x)} is outside [{low}, {high - 1}]")
    return int(x)


def _multi_discrete(arr: np.ndarray, space: gym.spaces.MultiDiscrete, what: str) -> np.ndarray:
    nvec = np.asarray(space.nvec)
    if arr.shape != nvec.shape:
        raise InvalidValueError(f"{what} has shape {list(arr.shape)}, the env's space has {list(nvec.shape)}")
    if np.any(arr != np.floor(arr)) or np.any(arr < 0) or np.any(arr >= nvec):
        raise InvalidValueError(f"{what} must hold integers in [0, nvec) = {nvec.tolist()}")
    return arr.astype(np.int64)


def action_to_json(space: gym.Space[Any], action: np.ndarray) -> Any:
    """The policy's action as the client sends it to its env (Discrete shifted by `start`)."""
    if isinstance(space, gym.spaces.Discrete):
        return int(action) + int(space.start)
    if isinstance(space, gym.spaces.Box):
        return np.clip(action, space.low, space.high).tolist()
    if isinstance(space, gym.spaces.MultiDiscrete):
        return np.asarray(action).reshape(np.asarray(space.nvec).shape).tolist()
    return np.asarray(action).tolist()


def space_json_schema(space: gym.Space[Any]) -> dict[str, Any]:
    """The JSON Schema of one value of `space`, for the OpenAPI document (so it documents this job's
    observations and actions, and fuzzers generate values of the right shape)."""
    if isinstance(space, gym.spaces.Discrete):
        return {"type": "integer", "minimum": int(space.start), "maximum": int(space.start + space.n - 1)}
    if isinstance(space, gym.spaces.MultiDiscrete):
        nvec = np.asarray(space.nvec).ravel().tolist()
        return {
            "type": "array",
            "minItems": len(nvec),
            "maxItems": len(nvec),
            "items": {"type": "integer", "minimum": 0},
        }
    if isinstance(space, gym.spaces.Box):
        schema: dict[str, Any] = {"type": "number"}
        for n in reversed(space.shape):
            schema = {"type": "array", "minItems": int(n), "maxItems": int(n), "items": schema}
        return schema
    return {}
