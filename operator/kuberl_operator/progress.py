"""Read the trainer's JSON `/status` from the head Service the operator created (the trainer pods get no
API credentials).

The reply is written by tenant code, so it is read defensively: at most `MAX_BODY_BYTES` (streamed; a
larger body is dropped without being buffered), no redirects (which would turn the read into a request to
an arbitrary host), and a short timeout. The values are validated where they are mirrored
(`status.mirrored_progress`). There is deliberately no per-job URL override: a URL taken from the job
object (an annotation) would let any job author make the operator fetch any address.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any, Literal

import aiohttp

from kuberl.spec import RLTrainingJob
from kuberl_operator.builders import trainer_port

TIMEOUT_S = 2.0
# A real /status is well under 1 KB; 64 KB leaves room for growth and bounds memory per read.
MAX_BODY_BYTES = 64 * 1024
DEFAULT_TEMPLATE = "http://{service}.{namespace}.svc:{port}"

ReadResult = Literal["ok", "unreachable", "rejected"]


def status_url(
    job: RLTrainingJob, rayjob_status: Mapping[str, Any] | None, *, url_template: str | None
) -> str | None:
    """Where `/status` is served, or None when the Ray cluster has no name yet.

    KubeRay's head Service is `<rayClusterName>-head-svc` in the job's namespace and exposes the head
    container's ports. `url_template` (the operator's KUBERL_STATUS_URL_TEMPLATE, set by whoever installs
    the operator, never by a job) may change the scheme or host pattern, with {service} {namespace} {port}.
    """
    cluster = (rayjob_status or {}).get("rayClusterName")
    if not isinstance(cluster, str) or not cluster:
        return None
    template = url_template or DEFAULT_TEMPLATE
    base = template.format(
        service=f"{cluster}-head-svc", namespace=job.metadata.namespace, port=trainer_port(job)
    )
    return base.rstrip("/") + "/status"


async def read_capped(resp: aiohttp.ClientResponse, limit: int) -> bytes | None:
    """The body, or None as soon as it exceeds `limit` bytes (what was read so far is dropped)."""
    if resp.content_length is not None and resp.content_length > limit:
        return None
    chunks: list[bytes] = []
    size = 0
    async for chunk in resp.content.iter_chunked(16 * 1024):
        size += len(chunk)
        if size > limit:
            return None
        chunks.append(chunk)
    return b"".join(chunks)


async def fetch_progress(
    session: aiohttp.ClientSession, url: str, *, limit: int = MAX_BODY_BYTES
) -> tuple[dict[str, Any] | None, ReadResult]:
    """The trainer's progress and how the read went. Unreachable (starting, restarting) or a bad reply
    gives None: never an error, the status keeps its last values."""
    try:
        async with session.get(
            url, timeout=aiohttp.ClientTimeout(total=TIMEOUT_S), allow_redirects=False
        ) as resp:
            if resp.status != 200:
                return None, "unreachable"
            raw = await read_capped(resp, limit)
    except (aiohttp.ClientError, TimeoutError, OSError):
        return None, "unreachable"
    if raw is None:
        return None, "rejected"
    try:
        data = json.loads(raw)
    except (ValueError, RecursionError):
        return None, "rejected"
    return (data, "ok") if isinstance(data, dict) else (None, "rejected")
