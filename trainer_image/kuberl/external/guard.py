"""What keeps hostile clients from bringing the policy server (and the trainer it lives in) down.

The server runs inside the training process and, on Kubernetes, listens on 0.0.0.0, so everything
here must hold without the token (review H3, M4, L10):

- `RequestGuard`, an ASGI middleware in front of FastAPI: the bearer token is checked on the headers,
  before a byte of the body is read, and bodies are capped per route (Content-Length up front, and
  the bytes actually received for chunked uploads): 401 and 413 cost the server nothing.
- `GuardedHttpToolsProtocol`, uvicorn's HTTP protocol with caps on open connections, in all and per
  client address (the ones past them are closed at once, so idle sockets cannot exhaust file
  descriptors nor crowd out other clients) and a deadline for a request's headers (slowloris clients
  that trickle a header line a second are cut off).
- `AcceptErrorFilter`: if descriptors do run out, asyncio logs a traceback per failed accept(), tens of
  thousands a second; one line per interval is enough.
"""

from __future__ import annotations

import asyncio
import json
import logging
import re
import secrets
import time
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

#: Routes anyone may call: liveness and the API description.
PUBLIC_PATHS = frozenset({"/healthz", "/openapi.json"})
#: `/v1/experience` bodies: an explicit bound (a local-mode client uploads in batches below it).
EXPERIENCE_MAX_BYTES = 4 * 1024 * 1024
#: Open connections past this are closed as soon as they are accepted (well below the usual 1,024
#: descriptors, which the trainer also needs for checkpoints, metrics and Ray)…
MAX_CONNECTIONS = 512
#: …and past this many from one client address, so one client cannot take them all (kubelet probes
#: and other simulators, from other addresses, still get through).
MAX_CONNECTIONS_PER_CLIENT = 64
#: A request's headers must arrive within this many seconds of the connection (or the last response).
HEADER_TIMEOUT_S = 10.0


def observation_body_limit(obs_size: int) -> int:
    """Bodies of the per-step routes carry one observation (plus an action and a few fields): allow
    24 bytes of JSON per number (`-1.2345678901234567e+300, `) and 16 KiB besides."""
    return 16 * 1024 + 24 * max(obs_size, 1) * 2


class RequestGuard:
    """Authenticate on headers and cap bodies, before FastAPI reads anything. `token` None: open
    (spec.external.insecure)."""

    def __init__(self, app: ASGIApp, *, token: str | None, step_limit: int) -> None:
        self.app = app
        self.expected = None if token is None else f"Bearer {token}".encode()
        self.step_limit = step_limit

    def limit_for(self, path: str) -> int:
        return EXPERIENCE_MAX_BYTES if path == "/v1/experience" else self.step_limit

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        path = scope.get("path", "")
        if path in PUBLIC_PATHS:
            await self.app(scope, receive, send)
            return
        headers = dict(scope.get("headers") or [])
        if self.expected is not None and not secrets.compare_digest(
            headers.get(b"authorization", b""), self.expected
        ):
            await _reply(send, 401, "missing or wrong bearer token", {b"www-authenticate": b"Bearer"})
            return
        limit = self.limit_for(path)
        declared = headers.get(b"content-length")
        if declared is not None:
            if not declared.isdigit():
                await _reply(send, 400, "invalid Content-Length")
                return
            if int(declared) > limit:
                await _reply(send, 413, f"the body is larger than this route's limit of {limit} bytes")
                return
        received = 0

        async def bounded_receive() -> Message:
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > limit:
                    raise _TooLargeError(limit)
            return message

        try:
            await self.app(scope, bounded_receive, send)
        except _TooLargeError as exc:
            await _reply(send, 413, f"the body is larger than this route's limit of {exc.limit} bytes")


class _TooLargeError(Exception):
    def __init__(self, limit: int) -> None:
        self.limit = limit


async def _reply(send: Send, status: int, detail: str, extra: dict[bytes, bytes] | None = None) -> None:
    body = json.dumps({"detail": detail}).encode()
    headers = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
    headers += list((extra or {}).items())
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})


class GuardedHttpToolsProtocol(HttpToolsProtocol):
    """uvicorn's httptools protocol with a connection cap and a header deadline (see the module doc)."""

    max_connections = MAX_CONNECTIONS
    max_per_client = MAX_CONNECTIONS_PER_CLIENT
    header_timeout_s = HEADER_TIMEOUT_S
    _header_timer: asyncio.TimerHandle | None = None

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        host = self.client[0] if self.client else None
        # Connections aborted in the same burst of accepts are still in the set until their
        # connection_lost runs: count only live ones, or a burst would shut out everyone.
        live = [c for c in self.connections if not _closing(c)]
        if len(live) > self.max_connections or (
            host is not None and sum(_peer_host(c) == host for c in live) > self.max_per_client
        ):
            transport.abort()  # frees the descriptor now; the client sees a reset
            return
        self._arm_header_timer()

    def _arm_header_timer(self) -> None:
        self._disarm_header_timer()
        self._header_timer = self.loop.call_later(self.header_timeout_s, self._headers_too_slow)

    def _disarm_header_timer(self) -> None:
        if self._header_timer is not None:
            self._header_timer.cancel()
            self._header_timer = None

    def _headers_too_slow(self) -> None:
        self._header_timer = None
        if not self.transport.is_closing():
            self.transport.abort()

    def on_headers_complete(self) -> None:
        self._disarm_header_timer()
        super().on_headers_complete()

    def on_response_complete(self) -> None:
        super().on_response_complete()
        if not self.transport.is_closing():
            self._arm_header_timer()  # the next request on this keep-alive connection gets its own

    def connection_lost(self, exc: Exception | None) -> None:
        self._disarm_header_timer()
        super().connection_lost(exc)


def _closing(protocol: object) -> bool:
    transport = getattr(protocol, "transport", None)
    return transport is None or bool(transport.is_closing())


def _peer_host(protocol: object) -> str | None:
    client = getattr(protocol, "client", None)
    return str(client[0]) if client else None


class AcceptErrorFilter(logging.Filter):
    """Let one "socket.accept() out of system resource" record through per `interval_s` seconds."""

    pattern = re.compile(r"socket\.accept\(\) out of system resource")

    def __init__(self, interval_s: float = 10.0) -> None:
        super().__init__()
        self.interval_s = interval_s
        self._last = -float("inf")
        self.suppressed = 0

    def filter(self, record: logging.LogRecord) -> bool:
        if not self.pattern.search(str(record.msg)):
            return True
        now = time.monotonic()
        if now - self._last < self.interval_s:
            self.suppressed += 1
            return False
        self._last = now
        if self.suppressed:
            record.msg = f"{record.msg} ({self.suppressed} more suppressed)"
            self.suppressed = 0
        record.exc_info = None  # the same traceback each time: the message says it all
        return True


def install_accept_error_filter() -> None:
    """Once per process: asyncio's logger is global."""
    logger = logging.getLogger("asyncio")
    if not any(isinstance(f, AcceptErrorFilter) for f in logger.filters):
        logger.addFilter(AcceptErrorFilter())
