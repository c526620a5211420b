"""What a PolicyClient whose simulator fails still delivers (docs/external.md, "Client modes").

Against the real uvicorn server: an exception inside `with PolicyClient(...)` still sends what was
logged (remote mode: the reward since the last request; local mode: the buffered events), and a
local-mode upload that could not connect keeps its events for the next upload.
"""

from __future__ import annotations

import gymnasium as gym
import pytest

from kuberl import PolicyClient
from kuberl.external.client import PolicyServerUnavailable
from kuberl.external.server import PolicyServer
from kuberl.external.service import PolicyService
from kuberl.spec.algorithms import ModelConfig
from tests.integration.external_common import TOKEN, running_server

OBS = [0.01, 0.0, -0.01, 0.0]


class SimulatorError(Exception):
    pass


def abandoned_rewards(service: PolicyService) -> dict[str, list[float]]:
    """Close every open episode as abandoned (as the idle timeout would) and return the rewards of the
    steps the server kept, per episode."""
    service.book.expire(now=float("inf"), idle_timeout=0.0)
    taken = service.book.take_batch()
    return {f.episode_id: [s.reward for s in f.steps] for f in taken.fragments}


@pytest.mark.parametrize("mode", ["remote", "local"])
def test_an_exception_in_the_simulator_loses_nothing_logged(mode: str) -> None:
    with running_server() as s:
        eid = ""
        client = PolicyClient(s.url, token=TOKEN, inference_mode=mode, max_buffered_steps=1000)  # type: ignore[arg-type]
        with pytest.raises(SimulatorError), client as c:  # noqa: PT012 (the crash happens inside the client's block)
            eid = c.start_episode()
            for t in range(10):
                c.get_action(eid, OBS)
                c.log_returns(eid, 1.0 + t)  # remote mode sends it with the next request...
            raise SimulatorError  # ...which never comes
        # Every step and every reward, the last one included (the last step is a truncation).
        assert abandoned_rewards(s.service) == {eid: [1.0 + t for t in range(10)]}


def test_a_local_upload_that_could_not_connect_is_kept_for_the_next() -> None:
    env = gym.make("CartPole-v1")
    spaces = env.observation_space, env.action_space
    env.close()
    first = PolicyService(*spaces, ModelConfig(), seed=0)
    server = PolicyServer(first, host="127.0.0.1", port=0, token=TOKEN)
    server.start()
    port = server.port
    c = PolicyClient(server.url, token=TOKEN, inference_mode="local", max_buffered_steps=1000)
    eid = c.start_episode()
    for t in range(5):
        c.get_action(eid, OBS)
        c.log_returns(eid, 1.0 + t)
    server.stop()  # e.g. the trainer pod restarts
    with pytest.raises(PolicyServerUnavailable) as info:
        c.flush()
    assert info.value.sent is False
    # Back on the same address: close() uploads what the failed upload held.
    second = PolicyService(*spaces, ModelConfig(), seed=0)
    server = PolicyServer(second, host="127.0.0.1", port=port, token=TOKEN)
    server.start()
    try:
        c.close()
        assert abandoned_rewards(second) == {eid: [1.0 + t for t in range(5)]}
    finally:
        server.stop()
