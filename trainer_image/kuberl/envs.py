"""Environments shipped with kuberl, named by import path in a job's `env`.

`env: kuberl.envs:make` — any env with Gymnasium's standard preprocessing and frame stacking.

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

`env: kuberl.envs:make_recall` — RecallEnv, a memory task that feed-forward policies cannot solve
(envConfig: num_cues, delay); examples/ppo-lstm-recall.yaml and impala-lstm-recall.yaml train on it.
"""

from __future__ import annotations

from typing import Any

import gymnasium as gym
import numpy as np

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


class RecallEnv(gym.Env[np.ndarray, np.int64]):
    """A memory task: the first observation shows a cue (one of `num_cues`, one-hot); the next `delay`
    observations are blank; the last one raises a query flag, and the action taken then earns +1 only if
    it names the cue. Actions before the query earn nothing.

    Without memory the query step looks the same whatever the cue, so a feed-forward policy is capped at
    chance (1 / num_cues per episode); a recurrent one can score 1.
    """

    def __init__(self, config: dict[str, Any] | None = None) -> None:
        config = config or {}
        self.num_cues = int(config.get("num_cues", 4))
        self.delay = int(config.get("delay", 4))
        self.observation_space = gym.spaces.Box(0.0, 1.0, shape=(self.num_cues + 1,), dtype=np.float32)
        self.action_space = gym.spaces.Discrete(self.num_cues)
        self.cue = 0
        self.t = 0

    def _obs(self) -> np.ndarray:
        o = np.zeros(self.num_cues + 1, dtype=np.float32)
        if self.t == 0:
            o[self.cue] = 1.0
        elif self.t == self.delay + 1:
            o[-1] = 1.0
        return o

    def reset(
        self, *, seed: int | None = None, options: dict[str, Any] | None = None
    ) -> tuple[np.ndarray, dict[str, Any]]:
        super().reset(seed=seed)
        self.cue = int(self.np_random.integers(0, self.num_cues))
        self.t = 0
        return self._obs(), {}

    def step(self, action: np.int64) -> tuple[np.ndarray, float, bool, bool, dict[str, Any]]:
        if self.t == self.delay + 1:
            return self._obs(), float(int(action) == self.cue), True, False, {}
        self.t += 1
        return self._obs(), 0.0, False, False, {}


def make_recall(config: dict[str, Any]) -> RecallEnv:
    return RecallEnv(config)
