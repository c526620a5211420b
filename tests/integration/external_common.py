"""A real policy server (uvicorn on 127.0.0.1, port 0) over a CartPole-shaped PolicyService."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import gymnasium as gym

from kuberl.external.server import PolicyServer
from kuberl.external.service import PolicyService
from kuberl.spec.algorithms import ModelConfig

TOKEN = "test-token-7f3a"


@contextmanager
def running_server(*, token: str | None = TOKEN, max_open_episodes: int = 64) -> Iterator[PolicyServer]:
    env = gym.make("CartPole-v1")
    service = PolicyService(
        env.observation_space, env.action_space, ModelConfig(), max_open_episodes=max_open_episodes, seed=0
    )
    env.close()
    server = PolicyServer(service, host="127.0.0.1", port=0, token=token)
    server.start()
    try:
        yield server
    finally:
        server.stop()
