"""Observation flattening for every space kind, and image layouts for the CNN encoder."""

from __future__ import annotations

import gymnasium as gym
import numpy as np
import torch

from kuberl.core.encoders import CNNEncoder
from kuberl.core.preprocess import flat_dim, flatten_batch, image_layout


def test_batched_flatten_matches_gymnasium_per_observation() -> None:
    space = gym.spaces.Dict(
        {
            "a": gym.spaces.Box(-1, 1, shape=(2, 2)),
            "b": gym.spaces.Discrete(3, start=1),
            "c": gym.spaces.Tuple((gym.spaces.MultiBinary(2), gym.spaces.MultiDiscrete([2, 3]))),
        }
    )
    space.seed(0)
    samples = [space.sample() for _ in range(5)]
    batch = {
        "a": np.stack([s["a"] for s in samples]),
        "b": np.array([s["b"] for s in samples]),
        "c": (np.stack([s["c"][0] for s in samples]), np.stack([s["c"][1] for s in samples])),
    }
    ours = flatten_batch(space, batch)
    assert ours.shape == (5, flat_dim(space))
    for i, s in enumerate(samples):
        np.testing.assert_allclose(ours[i], gym.spaces.flatten(space, s).astype(np.float32))


def test_image_layouts() -> None:
    assert image_layout(gym.spaces.Box(0, 255, (84, 84, 3), np.uint8)) == (3, 84, 84, True)
    assert image_layout(gym.spaces.Box(0, 255, (4, 84, 84), np.uint8)) == (4, 84, 84, False)
    assert image_layout(gym.spaces.Box(0, 255, (4, 12, 12, 1), np.uint8)) == (4, 12, 12, True)
    assert image_layout(gym.spaces.Box(-1, 1, (8,))) is None


def test_cnn_encoder_sees_the_image_as_stored() -> None:
    space = gym.spaces.Box(0, 255, (2, 6, 6, 1), np.uint8)  # two stacked grayscale frames
    enc = CNNEncoder(space, [(4, 3, 1)])
    frames = np.zeros((1, 2, 6, 6, 1), dtype=np.uint8)
    frames[0, 1, 2, 3, 0] = 255
    img = enc.to_image(torch.as_tensor(flatten_batch(space, frames)))
    assert img.shape == (1, 2, 6, 6)
    assert img[0, 1, 2, 3].item() == 1.0  # scaled to [0, 1], channel = stacked frame
    assert img.sum().item() == 1.0
    assert enc(torch.as_tensor(flatten_batch(space, frames))).shape == (1, enc.out_dim)
