"""The policy server over real HTTP (uvicorn on 127.0.0.1): auth, 4xx with reasons, both client modes."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from pathlib import Path

import gymnasium as gym
import httpx
import numpy as np
import pytest

from kuberl import PolicyClient
from kuberl.external.client import PolicyServerError
from kuberl.external.server import PolicyServer, resolve_token
from kuberl.spec import SpecError
from kuberl.spec.external import TOKEN_ENV, ExternalSpec
from tests.integration.external_common import TOKEN, running_server

OBS = [0.01, -0.02, 0.03, 0.04]


@pytest.fixture(scope="module")
def server() -> Iterator[PolicyServer]:
    with running_server() as s:
        yield s


@pytest.fixture
def http(server: PolicyServer) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=server.url, headers={"Authorization": f"Bearer {TOKEN}"}) as c:
        yield c


def new_episode(http: httpx.Client, **body: object) -> str:
    r = http.post("/v1/episodes", json=body)
    assert r.status_code == 201, r.text
    eid: str = r.json()["episode_id"]
    return eid


ROUTES = [
    ("POST", "/v1/episodes", {}),
    ("POST", "/v1/episodes/x/action", {"observation": OBS}),
    ("POST", "/v1/episodes/x/logged-action", {"observation": OBS, "action": 0}),
    ("POST", "/v1/episodes/x/returns", {"reward": 1.0}),
    ("POST", "/v1/episodes/x/end", {"observation": OBS}),
    ("GET", "/v1/policy", None),
    ("POST", "/v1/experience", {"events": []}),
]


@pytest.mark.parametrize(("method", "path", "body"), ROUTES)
@pytest.mark.parametrize("auth", [None, "Bearer wrong-token", "Basic dGVzdDp0ZXN0", f"Bearer {TOKEN}x"])
def test_missing_or_wrong_token_is_401(
    server: PolicyServer, method: str, path: str, body: object, auth: str | None
) -> None:
    headers = {"Authorization": auth} if auth else {}
    r = httpx.request(method, server.url + path, json=body, headers=headers)
    assert r.status_code == 401, r.text
    assert r.headers["www-authenticate"] == "Bearer"
    assert "token" in r.json()["detail"]


def test_healthz_and_openapi(server: PolicyServer, http: httpx.Client) -> None:
    assert httpx.get(server.url + "/healthz").json()["status"] == "ok"  # no token needed
    doc = http.get("/openapi.json").json()
    paths = set(doc["paths"])
    assert {
        "/v1/episodes",
        "/v1/episodes/{episode_id}/action",
        "/v1/episodes/{episode_id}/logged-action",
        "/v1/episodes/{episode_id}/returns",
        "/v1/episodes/{episode_id}/end",
        "/v1/policy",
        "/v1/experience",
    } <= paths
    assert "HTTPBearer" in doc["components"]["securitySchemes"]


def test_unknown_episode_is_404(http: httpx.Client) -> None:
    for path, body in [
        ("/v1/episodes/nope/action", {"observation": OBS}),
        ("/v1/episodes/nope/returns", {"reward": 1.0}),
        ("/v1/episodes/nope/end", {"observation": OBS}),
        ("/v1/episodes/nope/logged-action", {"observation": OBS, "action": 1}),
    ]:
        r = http.post(path, json=body)
        assert r.status_code == 404, (path, r.text)
        assert "nope" in r.json()["detail"]


@pytest.mark.parametrize(
    ("route", "body", "reason"),
    [
        ("action", {"observation": [0.0, 1.0]}, "shape [2]"),
        ("action", {"observation": "left"}, "number"),
        ("action", {"observation": [[1, 2], [3]]}, "rectangular"),
        ("action", {}, "observation"),
        ("action", {"observation": OBS, "surprise": 1}, "surprise"),
        ("logged-action", {"observation": OBS, "action": 2}, "outside [0, 1]"),
        ("logged-action", {"observation": OBS, "action": 0.5}, "integer"),
        ("logged-action", {"observation": OBS, "action": 1, "action_logp": -0.1}, "together"),
        (
            "logged-action",
            {"observation": OBS, "action": 1, "action_logp": -0.1, "action_dist_inputs": [1.0]},
            "2 finite",
        ),
        ("returns", {"reward": "lots"}, "reward"),
        ("returns", {"reward": 1e300}, "less than or equal"),
        ("action", {"observation": [1e300, 0, 0, 0]}, "float32 range"),
        ("end", {"observation": OBS, "truncated": "maybe"}, "truncated"),
    ],
)
def test_malformed_requests_are_422_with_a_reason(
    http: httpx.Client, route: str, body: object, reason: str
) -> None:
    eid = new_episode(http)
    r = http.post(f"/v1/episodes/{eid}/{route}", json=body)
    assert r.status_code == 422, r.text
    assert reason in r.text


def test_bad_json_nan_reward_and_conflicts(http: httpx.Client) -> None:
    eid = new_episode(http)
    r = http.post(
        f"/v1/episodes/{eid}/returns", content=b"{not json", headers={"content-type": "application/json"}
    )
    assert r.status_code == 422
    r = http.post(
        f"/v1/episodes/{eid}/returns",
        content=b'{"reward": NaN}',
        headers={"content-type": "application/json"},
    )
    assert r.status_code == 422
    r = http.post(
        f"/v1/episodes/{eid}/action",
        content=b'{"observation": [1e400, 0, 0, 0]}',  # JSON parsers read this as infinity
        headers={"content-type": "application/json"},
    )
    assert r.status_code == 422
    assert "non-finite" in r.text
    assert http.post("/v1/episodes", json={"episode_id": eid}).status_code == 409
    r = http.post(
        "/v1/experience", json={"events": [{"type": "returns", "episode_id": "ghost", "reward": 1.0}]}
    )
    assert r.status_code == 404
    assert "events[0]" in r.json()["detail"]
    r = http.post("/v1/experience", json={"events": [{"type": "teleport", "episode_id": eid}]})
    assert r.status_code == 422


def test_too_many_open_episodes_is_429() -> None:
    with running_server(max_open_episodes=2) as s, PolicyClient(s.url, token=TOKEN) as c:
        c.start_episode()
        c.start_episode()
        with pytest.raises(PolicyServerError) as err:
            c.start_episode()
        assert err.value.status == 429


def play(client: PolicyClient, episodes: int, seed: int) -> list[float]:
    env = gym.make("CartPole-v1")
    returns = []
    obs, _ = env.reset(seed=seed)
    for _ in range(episodes):
        eid = client.start_episode()
        total = 0.0
        while True:
            obs, reward, terminated, truncated, _ = env.step(client.get_action(eid, obs))
            client.log_returns(eid, float(reward))
            total += float(reward)
            if terminated or truncated:
                client.end_episode(eid, obs, truncated=truncated and not terminated)
                obs, _ = env.reset()
                break
        returns.append(total)
    return returns


@pytest.mark.parametrize("mode", ["remote", "local"])
def test_client_modes_deliver_every_step(mode: str) -> None:
    with running_server() as s:
        with PolicyClient(s.url, token=TOKEN, inference_mode=mode, seed=1) as c:  # type: ignore[arg-type]
            returns = play(c, 5, seed=1)
        taken = s.service.book.take_batch()
        assert taken.episode_returns == returns
        assert taken.num_steps == sum(returns)  # CartPole: one reward per step
        steps = [st for f in taken.fragments for st in f.steps]
        assert sum(st.reward for st in steps) == sum(returns)
        assert sum(st.terminated for st in steps) == 5
        # Both modes carry the behaviour policy's log-probs (computed server-side or client-side).
        assert all(st.logp is not None and st.logp < 0 for st in steps)


def test_local_client_pulls_new_weights() -> None:
    with (
        running_server() as s,
        PolicyClient(s.url, token=TOKEN, inference_mode="local", update_interval=0.0) as c,
    ):
        assert c.policy_version == 0
        new = {k: np.zeros_like(v) for k, v in s.service.weights.items()}
        s.service.set_weights(new)
        play(c, 1, seed=0)  # the upload at the episode's end reports version 1: the client pulls it
        assert c.policy_version == 1
        assert all(float(p.detach().abs().sum()) == 0.0 for p in c._local.policy.module.parameters())


def test_client_chosen_actions_are_accepted_in_remote_mode(http: httpx.Client, server: PolicyServer) -> None:
    eid = new_episode(http)
    for i, a in enumerate((0, 1, 1)):
        body = {
            "observation": OBS,
            "action": a,
            **({"reward": 1.0} if i else {}),
        }  # reward since the last action
        assert http.post(f"/v1/episodes/{eid}/logged-action", json=body).status_code == 204
    assert http.post(f"/v1/episodes/{eid}/end", json={"observation": OBS, "reward": 1.0}).json() == {
        "episode_return": 3.0,
        "length": 3,
    }
    taken = server.service.book.take_batch()
    steps = [st for f in taken.fragments for st in f.steps if st.logp is None]
    assert [int(st.action) for st in steps] == [0, 1, 1]  # scored by the trainer at batch time


def test_concurrent_clients_share_forward_passes(server: PolicyServer) -> None:
    errors: list[BaseException] = []

    def worker(seed: int) -> None:
        try:
            with PolicyClient(server.url, token=TOKEN) as c:
                play(c, 3, seed=seed)
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []


def test_the_server_refuses_to_start_without_a_token(tmp_path: Path) -> None:
    with pytest.raises(SpecError, match="needs a bearer token"):
        resolve_token(ExternalSpec(enabled=True), environ={})
    assert resolve_token(ExternalSpec(enabled=True, insecure=True), environ={}) is None
    assert resolve_token(ExternalSpec(enabled=True), environ={TOKEN_ENV: " s3cret\n"}) == "s3cret"
    f = tmp_path / "token"
    f.write_text("from-file\n")
    assert resolve_token(ExternalSpec(enabled=True, token_file=str(f)), environ={}) == "from-file"
    with pytest.raises(SpecError, match="tokenFile"):
        resolve_token(ExternalSpec(enabled=True, token_file=str(tmp_path / "missing")), environ={})
    with pytest.raises(ValueError, match="contradicts"):
        ExternalSpec(enabled=True, insecure=True, token_file="x")


def test_insecure_server_needs_no_token() -> None:
    with running_server(token=None) as s:
        assert httpx.post(s.url + "/v1/episodes", json={}).status_code == 201
