"""`env: kuberl.envs:make` — any env with Gymnasium's standard preprocessing and frame stacking.

    env: kuberl.envs:make
    envConfig:
      id: ALE/Pong-v5            # a Gymnasium id or a `module:factory`
      envKwargs: {frameskip: 1}  # passed to gymnasium.make / the factory
      atari: true                # AtariPreprocessing (noop reset, frame skip 4, 84×84 grayscale)
      grayscale: false           # GrayscaleObservation (non-Atari image envs)
      resize: [64, 64]           # ResizeObservation
      frameStack: 4              # FrameStackObservation: the last k observations

The wrappers are Gymnasium's own; kuberl only orders them. Image observations then reach the CNN
encoder (kuberl.core.encoders), which accepts the stacked layouts these wrappers produce.
"""

from __future__ import annotations

from typing import Any

import gymnasium as gym

from kuberl.core.env_factory import env_creator


def make(config: dict[str, Any]) -> gym.Env[Any, Any]:
    cfg = dict(config)
    env_id = cfg.pop("id", None)
    if not isinstance(env_id, str):
        raise ValueError("envConfig.id: required, a Gymnasium id or a module:factory")
    kwargs = dict(cfg.pop("envKwargs", cfg.pop("env_kwargs", {})) or {})
    atari = bool(cfg.pop("atari", False))
    grayscale = bool(cfg.pop("grayscale", False))
    resize = cfg.pop("resize", None)
    frame_stack = int(cfg.pop("frameStack", cfg.pop("frame_stack", 1)))
    if cfg:
        raise ValueError(f"envConfig: unknown keys {sorted(cfg)} for kuberl.envs:make")
    if atari:
        kwargs.setdefault("frameskip", 1)  # AtariPreprocessing does the frame skipping
    env = env_creator(env_id, kwargs)()
    if atari:
        env = gym.wrappers.AtariPreprocessing(env)
    if grayscale:
        env = gym.wrappers.GrayscaleObservation(env, keep_dim=True)
    if resize is not None:
        height, width = (int(x) for x in resize)
        env = gym.wrappers.ResizeObservation(env, (height, width))
    if frame_stack > 1:
        env = gym.wrappers.FrameStackObservation(env, frame_stack)
    return env
