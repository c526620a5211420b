"""Observation preprocessing: any Gymnasium space → one flat float32 vector per observation.

Runners, batches and replay buffers only ever hold flat vectors; a model that needs structure (a CNN
on images) restores it from the space. Flattening follows Gymnasium's `spaces.flatten` layout
(Dict keys in the space's order, Discrete one-hot), vectorised over a batch.
"""

from __future__ import annotations

from typing import Any

import gymnasium as gym
import numpy as np


def flat_dim(space: gym.Space[Any]) -> int:
    return int(gym.spaces.flatdim(space))


def flatten_batch(space: gym.Space[Any], obs: Any) -> np.ndarray:
    """A batch of B observations of `space` (as a vector env returns them) → float32 [B, flat_dim]."""
    if isinstance(space, gym.spaces.Box):
        arr = np.asarray(obs, dtype=np.float32)
        return arr.reshape(arr.shape[0], -1)
    if isinstance(space, gym.spaces.Discrete):
        return np.eye(int(space.n), dtype=np.float32)[np.asarray(obs, dtype=np.int64) - int(space.start)]
    if isinstance(space, gym.spaces.MultiBinary):
        arr = np.asarray(obs, dtype=np.float32)
        return arr.reshape(arr.shape[0], -1)
    if isinstance(space, gym.spaces.MultiDiscrete):
        arr = np.asarray(obs, dtype=np.int64).reshape(len(obs), -1) - np.asarray(space.start).reshape(-1)
        nvec = np.asarray(space.nvec).reshape(-1)
        return np.concatenate(
            [np.eye(int(n), dtype=np.float32)[arr[:, i]] for i, n in enumerate(nvec)], axis=1
        )
    if isinstance(space, gym.spaces.Dict):
        return np.concatenate([flatten_batch(sub, obs[key]) for key, sub in space.spaces.items()], axis=1)
    if isinstance(space, gym.spaces.Tuple):
        return np.concatenate([flatten_batch(sub, obs[i]) for i, sub in enumerate(space.spaces)], axis=1)
    raise TypeError(
        f"observation space {space} is not supported (Box, Discrete, MultiBinary, MultiDiscrete, Dict, Tuple are)"
    )


def batch_of_one(space: gym.Space[Any], obs: Any) -> Any:
    """One observation as a batch of one, in the layout a vector env uses for `space`."""
    if isinstance(space, gym.spaces.Dict):
        return {key: batch_of_one(sub, obs[key]) for key, sub in space.spaces.items()}
    if isinstance(space, gym.spaces.Tuple):
        return tuple(batch_of_one(sub, obs[i]) for i, sub in enumerate(space.spaces))
    return np.asarray(obs)[None]


def is_single(space: gym.Space[Any], obs: Any) -> bool:
    """Whether `obs` is one observation of `space` rather than a batch."""
    if isinstance(space, gym.spaces.Box | gym.spaces.MultiBinary | gym.spaces.MultiDiscrete):
        return bool(np.shape(obs) == space.shape)
    if isinstance(space, gym.spaces.Discrete):
        return np.ndim(obs) == 0
    if isinstance(space, gym.spaces.Dict):
        key, sub = next(iter(space.spaces.items()))
        return is_single(sub, obs[key])
    if isinstance(space, gym.spaces.Tuple):
        return is_single(space.spaces[0], obs[0])
    return False


def image_layout(space: gym.Space[Any]) -> tuple[int, int, int, bool] | None:
    """(channels, height, width, channels_last) when `space` is an image a CNN should see, else None.

    Accepted: HWC (channels ≤ 4, Gymnasium's render/Atari layout), CHW (e.g. stacked grayscale frames
    from FrameStackObservation), and stacked colour frames (S, H, W, C), which become S·C channels.
    """
    if not isinstance(space, gym.spaces.Box):
        return None
    shape = space.shape
    if len(shape) == 3:
        if shape[-1] <= 4:
            return shape[2], shape[0], shape[1], True
        return shape[0], shape[1], shape[2], False
    if len(shape) == 4 and shape[-1] <= 4:
        return shape[0] * shape[3], shape[1], shape[2], True
    return None
