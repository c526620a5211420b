"""A convolutional encoder for image observations (Mnih et al. 2015's Nature CNN by default)."""

from __future__ import annotations

from typing import Any

import gymnasium as gym
import numpy as np
import torch
from torch import nn

from kuberl.core.preprocess import image_layout

NATURE_CNN: list[tuple[int, int, int]] = [(32, 8, 4), (64, 4, 2), (64, 3, 1)]
SMALL_CNN: list[tuple[int, int, int]] = [(16, 3, 1), (32, 3, 2)]
_ACT: dict[str, type[nn.Module]] = {"relu": nn.ReLU, "elu": nn.ELU, "silu": nn.SiLU, "tanh": nn.Tanh}


def default_filters(height: int, width: int) -> list[tuple[int, int, int]]:
    """The Nature CNN needs ≥ 36 pixels a side; smaller images get two small layers."""
    return NATURE_CNN if min(height, width) >= 36 else SMALL_CNN


class CNNEncoder(nn.Module):
    """Flat observation → image → conv stack → flat features. Pixel values of uint8 spaces are scaled to [0, 1]."""

    def __init__(
        self,
        space: gym.Space[Any],
        filters: list[tuple[int, int, int]] | None = None,
        activation: str = "relu",
    ) -> None:
        super().__init__()
        layout = image_layout(space)
        if layout is None:
            raise ValueError(f"observation space {space} is not an image (HWC, CHW or stacked HWC)")
        assert isinstance(space, gym.spaces.Box)
        self.channels, self.height, self.width, self.channels_last = layout
        self.shape = tuple(int(d) for d in space.shape)
        self.scale = 1.0 / 255.0 if space.dtype == np.uint8 else 1.0
        layers: list[nn.Module] = []
        in_ch = self.channels
        for out_ch, kernel, stride in filters or default_filters(self.height, self.width):
            conv = nn.Conv2d(in_ch, out_ch, kernel, stride)
            nn.init.orthogonal_(conv.weight, gain=float(np.sqrt(2.0)))
            if conv.bias is not None:
                nn.init.zeros_(conv.bias)
            layers += [conv, _ACT[activation]()]
            in_ch = out_ch
        layers.append(nn.Flatten())
        self.net = nn.Sequential(*layers)
        with torch.no_grad():
            self.out_dim = int(self.net(torch.zeros(1, self.channels, self.height, self.width)).shape[-1])

    def to_image(self, flat: torch.Tensor) -> torch.Tensor:
        x = flat.reshape(flat.shape[0], *self.shape) * self.scale
        if len(self.shape) == 4:  # (S, H, W, C) → (S·C, H, W)
            x = x.permute(0, 1, 4, 2, 3).reshape(flat.shape[0], self.channels, self.height, self.width)
        elif self.channels_last:
            x = x.permute(0, 3, 1, 2)
        return x

    def forward(self, flat: torch.Tensor) -> torch.Tensor:
        return self.net(self.to_image(flat))
