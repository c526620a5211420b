"""Read the trainer's JSON `/status` from the head service (the trainer pods get no API credentials)."""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

import aiohttp

from kuberl.spec import RLTrainingJob
from kuberl_operator.builders import trainer_port
from kuberl_operator.labels import ANNOTATION_STATUS_URL

TIMEOUT_S = 2.0


def status_url(
    job: RLTrainingJob, rayjob_status: Mapping[str, Any] | None, *, url_template: str | None
) -> str | None:
    """Where `/status` is served, or None when the Ray cluster has no name yet.

    Order: the job's `kuberl.io/status-url` annotation (a base URL), the operator's template (env
    KUBERL_STATUS_URL_TEMPLATE, with {service} {namespace} {port}), else KubeRay's head service, which
    is `<rayClusterName>-head-svc` and exposes the head container's ports.
    """
    override = job.metadata.annotations.get(ANNOTATION_STATUS_URL)
    if override:
        return override.rstrip("/") + "/status"
    cluster = (rayjob_status or {}).get("rayClusterName")
    if not cluster:
        return None
    template = url_template or "http://{service}.{namespace}.svc:{port}"
    base = template.format(
        service=f"{cluster}-head-svc", namespace=job.metadata.namespace, port=trainer_port(job)
    )
    return base.rstrip("/") + "/status"


async def fetch_progress(session: aiohttp.ClientSession, url: str) -> dict[str, Any] | None:
    """The trainer's progress, or None when it is unreachable (starting, restarting): never an error."""
    try:
        async with session.get(url, timeout=aiohttp.ClientTimeout(total=TIMEOUT_S)) as resp:
            if resp.status != 200:
                return None
            data = json.loads(await resp.text())
    except (aiohttp.ClientError, TimeoutError, ValueError, OSError):
        return None
    return data if isinstance(data, dict) else None
