"""Hostile clients against a real policy server (uvicorn on 127.0.0.1): no token, huge or endless bodies,
idle and slow connections, a large upload, loose values and odd ids. Each case is a regression test for
review H3, M1, M4, M9, L8, L9 or L10; all loops are bounded and stop by themselves."""

from __future__ import annotations

import json
import socket
import threading
import time
from collections.abc import Iterator

import psutil
import pytest
import requests

from kuberl.external.guard import EXPERIENCE_MAX_BYTES, GuardedHttpToolsProtocol
from kuberl.external.server import PolicyServer
from tests.integration.external_common import TOKEN, running_server

AUTH = {"Authorization": f"Bearer {TOKEN}"}
OBS = [0.0, 0.0, 0.0, 0.0]


@pytest.fixture
def server() -> Iterator[PolicyServer]:
    with running_server() as srv:
        yield srv


def raw_request(server: PolicyServer, head: str, body: bytes = b"", *, source: str = "127.0.0.1") -> bytes:
    """Send `head` (and `body`) on a fresh connection and return the first response bytes."""
    with socket.create_connection(("127.0.0.1", server.port), timeout=10, source_address=(source, 0)) as s:
        s.sendall(head.encode() + body)
        return s.recv(65536)


def test_unauthenticated_huge_body_is_refused_before_it_is_read(server: PolicyServer) -> None:
    """H3: the 401 comes back while the client has sent only the headers of a 100 MB upload."""
    rss = psutil.Process().memory_info().rss
    for _ in range(3):
        head = (
            "POST /v1/episodes/x/action HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
            f"Content-Length: {100 * 1024 * 1024}\r\n\r\n"
        )
        reply = raw_request(server, head, b'{"observation": [')
        assert reply.startswith(b"HTTP/1.1 401"), reply[:200]
    assert psutil.Process().memory_info().rss - rss < 50 * 1024 * 1024


@pytest.mark.parametrize(
    ("path", "size"),
    [("/v1/episodes/x/action", 1024 * 1024), ("/v1/experience", EXPERIENCE_MAX_BYTES + 1)],
)
def test_authenticated_bodies_past_the_route_limit_get_413(
    server: PolicyServer, path: str, size: int
) -> None:
    head = (
        f"POST {path} HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {TOKEN}\r\n"
        f"Content-Type: application/json\r\nContent-Length: {size}\r\n\r\n"
    )
    assert raw_request(server, head).startswith(b"HTTP/1.1 413")


def test_a_chunked_body_past_the_limit_is_cut_off(server: PolicyServer) -> None:
    """No Content-Length to check up front: the guard counts the bytes as they arrive."""

    def chunks() -> Iterator[bytes]:
        yield b'{"events": ['
        for _ in range(EXPERIENCE_MAX_BYTES // 50_000 + 5):  # 55 KB each: past the limit
            yield b'{"type": "returns", "episode_id": "e", "reward": 1.0},' * 1_000

    resp = requests.post(f"{server.url}/v1/experience", data=chunks(), headers=AUTH, timeout=30)
    assert resp.status_code == 413, resp.text


def test_idle_connections_cannot_exhaust_descriptors_or_block_healthz(server: PolicyServer) -> None:
    """M4: 1,100 idle connections (from 127.0.0.1) leave /healthz answering (from 127.0.0.2), and the
    server holds at most its per-client cap of them."""
    me = psutil.Process()
    before = me.num_fds()
    idle = []
    try:
        for _ in range(1_100):
            s = socket.socket()
            s.settimeout(5)
            s.connect(("127.0.0.1", server.port))
            s.sendall(b"POST /v1/episodes HTTP/1.1\r\nHost: x\r\n")  # headers never finish
            idle.append(s)
        time.sleep(0.5)
        for _ in range(3):
            t = time.perf_counter()
            reply = raw_request(server, "GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n", source="127.0.0.2")
            assert reply.startswith(b"HTTP/1.1 200"), reply[:100]
            assert time.perf_counter() - t < 5  # the review saw every probe time out
        # the client side holds 1,100 descriptors; the server side only its per-client cap (+ slack)
        assert me.num_fds() - before < 1_100 + GuardedHttpToolsProtocol.max_per_client + 100
    finally:
        for s in idle:
            s.close()


def test_headers_that_never_finish_are_cut_off(server: PolicyServer, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(GuardedHttpToolsProtocol, "header_timeout_s", 1.0)
    with socket.create_connection(("127.0.0.1", server.port), timeout=10) as s:
        s.sendall(b"POST /v1/episodes HTTP/1.1\r\nHost: x\r\n")
        t = time.perf_counter()
        for _ in range(16):  # a header line every half second, as a slowloris client does
            try:
                s.sendall(b"X-Slow: 1\r\n")
                if s.recv(1, socket.MSG_DONTWAIT) == b"":
                    break
            except BlockingIOError:
                pass
            except OSError:
                break
            time.sleep(0.5)
        # cut off after the 1 s deadline (6 s allows for a loaded machine); never, before: the loop ran 8 s
        assert time.perf_counter() - t < 6, "the server kept a connection whose headers never finished"


def test_a_large_upload_does_not_block_other_clients(server: PolicyServer) -> None:
    """M9: validating a near-limit /v1/experience upload happens off the event loop."""
    event = {"type": "returns", "episode_id": "e", "reward": 1.0}
    n = EXPERIENCE_MAX_BYTES // (len(json.dumps(event)) + 2) - 10
    body = json.dumps({"events": [event] * n}).encode()
    assert len(body) <= EXPERIENCE_MAX_BYTES
    result: dict[str, requests.Response] = {}

    def upload() -> None:
        result["r"] = requests.post(
            f"{server.url}/v1/experience",
            data=body,
            headers={**AUTH, "Content-Type": "application/json"},
            timeout=60,
        )

    worker = threading.Thread(target=upload)
    started = time.perf_counter()
    worker.start()
    worst = 0.0
    while worker.is_alive():
        t = time.perf_counter()
        assert requests.get(f"{server.url}/healthz", timeout=10).status_code == 200
        worst = max(worst, time.perf_counter() - t)
        time.sleep(0.01)
    worker.join()
    took = time.perf_counter() - started
    assert result["r"].status_code == 404  # every event names an episode that was never started
    assert "events[0]" in result["r"].text
    # On the event loop, a probe waited for (nearly) the whole upload; off it, for a GIL slice or two.
    # Relative, so a loaded machine (slower upload and probes alike) does not fail it.
    assert worst < max(1.0, took / 3), f"/healthz waited {worst:.2f} s behind a {took:.2f} s upload"


@pytest.mark.parametrize(
    "observation",
    [["0", "0", "0", "0"], [True, False, True, False], [0.0, 0.0, "1", 0.0], "0000"],
)
def test_observations_must_be_json_numbers(server: PolicyServer, observation: object) -> None:
    ep = requests.post(f"{server.url}/v1/episodes", json={}, headers=AUTH, timeout=10).json()["episode_id"]
    resp = requests.post(
        f"{server.url}/v1/episodes/{ep}/action", json={"observation": observation}, headers=AUTH, timeout=10
    )
    assert resp.status_code == 422, resp.text


@pytest.mark.parametrize("body", [{"reward": "1"}, {"reward": True}])
def test_rewards_must_be_json_numbers(server: PolicyServer, body: dict[str, object]) -> None:
    ep = requests.post(f"{server.url}/v1/episodes", json={}, headers=AUTH, timeout=10).json()["episode_id"]
    resp = requests.post(f"{server.url}/v1/episodes/{ep}/returns", json=body, headers=AUTH, timeout=10)
    assert resp.status_code == 422, resp.text


def test_explore_must_be_a_boolean(server: PolicyServer) -> None:
    ep = requests.post(f"{server.url}/v1/episodes", json={}, headers=AUTH, timeout=10).json()["episode_id"]
    resp = requests.post(
        f"{server.url}/v1/episodes/{ep}/action",
        json={"observation": OBS, "explore": "yes"},
        headers=AUTH,
        timeout=10,
    )
    assert resp.status_code == 422, resp.text


@pytest.mark.parametrize("episode_id", ["a/b", "..", "x..y", "nul\x00", "é", "a b", ""])
def test_episode_ids_are_restricted(server: PolicyServer, episode_id: str) -> None:
    resp = requests.post(
        f"{server.url}/v1/episodes", json={"episode_id": episode_id}, headers=AUTH, timeout=10
    )
    assert resp.status_code == 422, resp.text


def test_float32_max_rewards_cannot_add_up_to_infinity(server: PolicyServer) -> None:
    """M1: two finite float32-max rewards summed to inf, and every weight became NaN."""
    ep = requests.post(f"{server.url}/v1/episodes", json={}, headers=AUTH, timeout=10).json()["episode_id"]
    act = requests.post(
        f"{server.url}/v1/episodes/{ep}/action", json={"observation": OBS}, headers=AUTH, timeout=10
    )
    assert act.status_code == 200
    first = requests.post(f"{server.url}/v1/episodes/{ep}/returns", json={"reward": 3.4e38}, headers=AUTH)
    assert first.status_code == 204
    second = requests.post(f"{server.url}/v1/episodes/{ep}/returns", json={"reward": 3.4e38}, headers=AUTH)
    assert second.status_code == 422, second.text
    assert "float32" in second.text


def test_no_unauthenticated_doc_pages_and_no_cdn(server: PolicyServer) -> None:
    """L10: /redoc and /docs were public and loaded Swagger/ReDoc from a CDN."""
    for path in ("/docs", "/redoc", "/docs/oauth2-redirect"):
        assert requests.get(f"{server.url}{path}", timeout=10).status_code in (401, 404)
    doc = requests.get(f"{server.url}/openapi.json", timeout=10)
    assert doc.status_code == 200
    assert "cdn." not in doc.text
    assert "ExperienceRequest" in doc.json()["components"]["schemas"]
