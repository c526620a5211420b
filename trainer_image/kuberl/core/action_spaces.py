"""Action spaces as the policy sees them: one flat array per action, and back to the env's own structure.

Discrete and Box actions keep the layout they always had (an int64 index; a float32 array of the space's
shape), so existing checkpoints and recorded batches read the same. The other kinds are one flat vector
per action, so a SampleBatch column stays one array `[T, N, width]`:

- MultiDiscrete: int64 `[k]` of 0-based indices (the env gets them plus `start`, in `nvec`'s shape);
- MultiBinary: int64 `[k]` of 0/1 (the env gets int8 in the space's shape);
- Tuple/Dict: float32 `[width]`, the components' columns one after another in the space's order (a
  Discrete component takes one column holding its index; small integers are exact in float32).

The matching distribution (kuberl.core.distributions) reads and writes exactly this layout.
"""

from __future__ import annotations

from typing import Any, Literal

import gymnasium as gym
import numpy as np

from kuberl.spec.capabilities import ActionSpaceKind

# The spaces a Tuple/Dict action may be made of (nested Tuple/Dict included).
_LEAVES = (gym.spaces.Discrete, gym.spaces.Box, gym.spaces.MultiDiscrete, gym.spaces.MultiBinary)

NAMES: dict[ActionSpaceKind, str] = {
    "discrete": "Discrete",
    "box": "Box",
    "multi_discrete": "MultiDiscrete",
    "multi_binary": "MultiBinary",
    "tuple": "Tuple",
    "dict": "Dict",
}


def action_space_kind(space: gym.Space[Any]) -> ActionSpaceKind | None:
    """The capability kind of an action space, or None for one no algorithm trains (Text, Graph, a Tuple
    holding one of those, a Box of integers, …)."""
    if isinstance(space, gym.spaces.Discrete):
        return "discrete"
    if isinstance(space, gym.spaces.Box):
        return "box" if np.issubdtype(space.dtype, np.floating) else None
    if isinstance(space, gym.spaces.MultiDiscrete):
        return "multi_discrete"
    if isinstance(space, gym.spaces.MultiBinary):
        return "multi_binary"
    if isinstance(space, gym.spaces.Tuple | gym.spaces.Dict):
        if not all(action_space_kind(s) is not None for s in _components(space)):
            return None
        return "tuple" if isinstance(space, gym.spaces.Tuple) else "dict"
    return None


def _components(space: gym.spaces.Tuple | gym.spaces.Dict) -> list[gym.Space[Any]]:
    return list(space.spaces) if isinstance(space, gym.spaces.Tuple) else list(space.spaces.values())


def action_width(space: gym.Space[Any]) -> int:
    """Columns one action takes in the flat layout (1 for Discrete, whose column is a scalar)."""
    if isinstance(space, gym.spaces.Discrete):
        return 1
    if isinstance(space, gym.spaces.Box | gym.spaces.MultiDiscrete | gym.spaces.MultiBinary):
        return int(np.prod(space.shape))
    if isinstance(space, gym.spaces.Tuple | gym.spaces.Dict):
        return sum(action_width(s) for s in _components(space))
    raise TypeError(f"action space {space} is not supported")


def action_dtype(space: gym.Space[Any]) -> Literal["int64", "float32"]:
    """The dtype of the flat action array."""
    if isinstance(space, gym.spaces.Discrete | gym.spaces.MultiDiscrete | gym.spaces.MultiBinary):
        return "int64"
    return "float32"


def is_structured(space: gym.Space[Any]) -> bool:
    """True for the kinds whose env actions differ from the policy's flat array (all but Discrete/Box)."""
    return not isinstance(space, gym.spaces.Discrete | gym.spaces.Box)


def to_env(space: gym.Space[Any], actions: np.ndarray) -> Any:
    """A batch of flat policy actions `[B, …]` as the batched action a Gymnasium vector env with this
    single action space takes: Box clipped to its bounds; MultiDiscrete shifted by `start` and shaped
    like `nvec`; MultiBinary as int8; Tuple a tuple and Dict a dict of batched components."""
    if isinstance(space, gym.spaces.Discrete):
        return actions
    if isinstance(space, gym.spaces.Box):
        return np.clip(actions.reshape(len(actions), *space.shape), space.low, space.high)
    if isinstance(space, gym.spaces.MultiDiscrete):
        ints = actions.astype(np.int64).reshape(len(actions), *space.nvec.shape)
        return (ints + space.start).astype(space.dtype)
    if isinstance(space, gym.spaces.MultiBinary):
        return actions.reshape(len(actions), *space.shape).astype(space.dtype)
    if isinstance(space, gym.spaces.Tuple | gym.spaces.Dict):
        parts: list[Any] = []
        col = 0
        for sub in _components(space):
            w = action_width(sub)
            block = actions[:, col : col + w]
            col += w
            if isinstance(sub, gym.spaces.Discrete):
                parts.append(block[:, 0].astype(np.int64) + int(sub.start))
            else:
                parts.append(
                    to_env(sub, block.astype(np.int64 if action_dtype(sub) == "int64" else np.float32))
                )
        if isinstance(space, gym.spaces.Tuple):
            return tuple(parts)
        return dict(zip(space.spaces.keys(), parts, strict=True))
    raise TypeError(f"action space {space} is not supported")


def to_env_single(space: gym.Space[Any], action: np.ndarray) -> Any:
    """One flat policy action as the env's own action (to_env for a batch of one, unbatched)."""
    return _first(space, to_env(space, np.asarray(action)[None]))


def _first(space: gym.Space[Any], batched: Any) -> Any:
    if isinstance(space, gym.spaces.Tuple):
        return tuple(_first(s, b) for s, b in zip(space.spaces, batched, strict=True))
    if isinstance(space, gym.spaces.Dict):
        return {k: _first(s, batched[k]) for k, s in space.spaces.items()}
    return batched[0]


def action_space_problem(
    algorithm: str, kinds: frozenset[ActionSpaceKind], space: gym.Space[Any]
) -> str | None:
    """Why `algorithm` (which trains the action space `kinds`) cannot act in `space` (a phrase to follow
    the env's name: "has a … action space …"), or None if it can."""
    wanted = ", ".join(NAMES[k] for k in NAMES if k in kinds)
    kind = action_space_kind(space)
    if kind is None:
        return (
            f"has the action space {space}, which kuberl cannot train (it trains Discrete, Box of floats, "
            f"MultiDiscrete, MultiBinary, and Tuple/Dict of those); {algorithm} acts in {wanted} action spaces"
        )
    if kind not in kinds:
        return f"has a {NAMES[kind]} action space ({space}); {algorithm} acts in {wanted} action spaces only"
    return None
