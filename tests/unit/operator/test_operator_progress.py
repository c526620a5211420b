"""The trainer /status read against real HTTP servers on 127.0.0.1: capped, no redirects, no
tenant-controlled URL."""

from __future__ import annotations

import asyncio
import resource
from typing import Any

import aiohttp
import pytest
from aiohttp import web

from kuberl.spec import parse_job
from kuberl_operator.progress import MAX_BODY_BYTES, fetch_progress, status_url


async def _serve(routes: dict[str, Any]) -> tuple[web.AppRunner, str]:
    app = web.Application()
    for path, handler in routes.items():
        app.router.add_get(path, handler)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    return runner, f"http://127.0.0.1:{port}"


async def _stream_forever(request: web.Request) -> web.StreamResponse:
    """400 MB of JSON-looking bytes, chunked (no Content-Length), as a hostile trainer could send."""
    resp = web.StreamResponse()
    resp.content_type = "application/json"
    await resp.prepare(request)
    chunk = b'{"iteration": 1, "pad": "' + b"x" * (1024 * 1024)
    try:
        for _ in range(400):
            await resp.write(chunk)
    except (ConnectionResetError, RuntimeError):
        pass  # the operator hung up, as it should
    return resp


def _rss_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def test_a_huge_body_is_dropped_without_being_buffered() -> None:
    async def main() -> tuple[Any, str, float]:
        runner, url = await _serve({"/status": _stream_forever})
        try:
            before = _rss_mib()
            async with aiohttp.ClientSession() as session:
                data, result = await fetch_progress(session, url + "/status")
            return data, result, _rss_mib() - before
        finally:
            await runner.cleanup()

    data, result, grown = asyncio.run(main())
    assert (data, result) == (None, "rejected")
    # The old unbounded read grew the operator by ~800 MB on this body; a capped one by well under 32.
    assert grown < 32, f"RSS grew by {grown:.0f} MiB"


def test_declared_oversize_and_non_json_bodies_are_rejected_and_ok_is_parsed() -> None:
    async def big(_: web.Request) -> web.Response:
        return web.Response(body=b"{" + b" " * MAX_BODY_BYTES + b"}", content_type="application/json")

    async def garbage(_: web.Request) -> web.Response:
        return web.Response(text="[" * 100_000)

    async def ok(_: web.Request) -> web.Response:
        return web.json_response({"iteration": 3, "episodeReturnMean": 1.5})

    async def redirect(_: web.Request) -> web.Response:
        raise web.HTTPFound("/ok")

    async def main() -> list[tuple[Any, str]]:
        runner, url = await _serve({"/big": big, "/garbage": garbage, "/ok": ok, "/redirect": redirect})
        try:
            async with aiohttp.ClientSession() as session:
                return [
                    await fetch_progress(session, f"{url}/{p}") for p in ("big", "garbage", "ok", "redirect")
                ]
        finally:
            await runner.cleanup()

    big_r, garbage_r, ok_r, redirect_r = asyncio.run(main())
    assert big_r == (None, "rejected")
    assert garbage_r == (None, "rejected")
    assert ok_r == ({"iteration": 3, "episodeReturnMean": 1.5}, "ok")
    # A redirect would let the trainer point the operator at any host: not followed.
    assert redirect_r == (None, "unreachable")


def test_unreachable_is_not_an_error() -> None:
    async def main() -> tuple[Any, str]:
        async with aiohttp.ClientSession() as session:
            return await fetch_progress(session, "http://127.0.0.1:9/status")

    assert asyncio.run(main()) == (None, "unreachable")


@pytest.fixture
def job() -> Any:
    return parse_job(
        {
            "metadata": {
                "name": "j",
                "namespace": "team-a",
                # The old test hook: a tenant-written URL the operator fetched. It must be ignored now.
                "annotations": {"kuberl.io/status-url": "http://169.254.169.254/latest/meta-data"},
            },
            "spec": {"algorithm": "PPO", "env": "CartPole-v1", "metrics": {"port": 9100}},
        }
    )


def test_status_url_is_the_head_service_only(job: Any) -> None:
    assert status_url(job, None, url_template=None) is None
    assert status_url(job, {"rayClusterName": "j-r0-x"}, url_template=None) == (
        "http://j-r0-x-head-svc.team-a.svc:9100/status"
    )
    assert status_url(job, {"rayClusterName": ["not", "a", "name"]}, url_template=None) is None
