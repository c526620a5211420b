"""kopf handlers: decorators only; the work is in reconcile.py.

Run with `python -m kuberl_operator` or `kopf run -m kuberl_operator.handlers`.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any, cast

import aiohttp
import kopf

from kuberl.spec import GROUP, PLURAL, VERSION, RLTrainingJob
from kuberl_operator import k8s, reconcile
from kuberl_operator.labels import FINALIZER, PEERING_NAME, PROGRESS_PREFIX
from kuberl_operator.metrics import OperatorMetrics
from kuberl_operator.progress import fetch_progress, status_url
from kuberl_operator.settings import namespaces_from_env

# How often the status loop reads each RayJob and trainer (seconds). Read once, at import, because
# kopf fixes a timer's interval when the decorator runs.
SYNC_INTERVAL_S = float(os.environ.get("KUBERL_SYNC_INTERVAL", "10"))
DEFAULT_METRICS_PORT = 8081
RESOURCE = (GROUP, VERSION, PLURAL)


class _QuietSyncTimer(logging.Filter):
    """kopf logs every successful timer run at INFO: one line per job every few seconds drowns the log."""

    def filter(self, record: logging.LogRecord) -> bool:
        return "Timer 'sync_status' succeeded" not in record.getMessage()


def _now() -> datetime:
    return datetime.now(UTC)


def _post_event(body: Mapping[str, Any], type_: str, reason: str, message: str) -> None:
    kopf.event(cast(kopf.Body, body), type=type_, reason=reason, message=message[:1000])


@kopf.on.startup()
async def configure(settings: kopf.OperatorSettings, memo: kopf.Memo, **_: Any) -> None:
    """Every kopf setting of kuberl, in one place."""
    settings.persistence.finalizer = FINALIZER
    settings.persistence.progress_storage = kopf.AnnotationsProgressStorage(prefix=PROGRESS_PREFIX)
    settings.persistence.diffbase_storage = kopf.AnnotationsDiffBaseStorage(
        prefix=PROGRESS_PREFIX, key="last-handled-configuration"
    )
    k8s.load_config()
    # Several replicas coordinate through a KopfPeering object (one is active); one replica needs none.
    if os.environ.get("KUBERL_PEERING"):
        settings.peering.name = PEERING_NAME
        settings.peering.standalone = False
        settings.peering.mandatory = True
        settings.peering.clusterwide = namespaces_from_env(os.environ.get("KUBERL_NAMESPACES")) is None
        k8s.ensure_peering(PEERING_NAME, namespaces_from_env(os.environ.get("KUBERL_NAMESPACES")))
    else:
        settings.peering.standalone = True
    logging.getLogger("kopf.objects").addFilter(_QuietSyncTimer())
    # kuberl posts its own Events on phase changes; kopf's per-log-line Events would drown them.
    settings.posting.level = logging.WARNING
    settings.watching.server_timeout = 300
    settings.watching.reconnect_backoff = 1.0

    metrics = OperatorMetrics()
    metrics.serve(int(os.environ.get("KUBERL_OPERATOR_METRICS_PORT", DEFAULT_METRICS_PORT)))
    session = aiohttp.ClientSession()
    template = os.environ.get("KUBERL_STATUS_URL_TEMPLATE")

    async def read_progress(
        job: RLTrainingJob, rayjob_status: Mapping[str, Any] | None
    ) -> dict[str, Any] | None:
        url = status_url(job, rayjob_status, url_template=template)
        return await fetch_progress(session, url) if url else None

    memo.session = session
    memo.ctx = reconcile.Context(
        api=k8s.KubernetesApi(),
        metrics=metrics,
        now=_now,
        event=_post_event,
        progress=read_progress,
        default_image=os.environ.get("KUBERL_DEFAULT_IMAGE") or None,
    )


@kopf.on.cleanup()
async def close(memo: kopf.Memo, **_: Any) -> None:
    session = memo.get("session")
    if session is not None:
        await session.close()


@kopf.on.create(*RESOURCE)
async def on_create(body: kopf.Body, memo: kopf.Memo, **_: Any) -> None:
    ctx: reconcile.Context = memo.ctx
    async with ctx.metrics.observe("create"):
        await reconcile.create(ctx, body)


@kopf.on.update(*RESOURCE, field="spec")
async def on_update(body: kopf.Body, diff: kopf.Diff, memo: kopf.Memo, **_: Any) -> None:
    ctx: reconcile.Context = memo.ctx
    async with ctx.metrics.observe("update"):
        # kopf gives paths relative to `field`; reconcile expects them from the object root.
        spec_diff = [(op, ("spec", *tuple(path)), old, new) for op, path, old, new in diff]
        await reconcile.update(ctx, body, spec_diff)


@kopf.on.delete(*RESOURCE)
async def on_delete(body: kopf.Body, memo: kopf.Memo, **_: Any) -> None:
    ctx: reconcile.Context = memo.ctx
    async with ctx.metrics.observe("delete"):
        await reconcile.delete(ctx, body)


@kopf.timer(*RESOURCE, interval=SYNC_INTERVAL_S, initial_delay=min(SYNC_INTERVAL_S, 1.0))
async def sync_status(body: kopf.Body, memo: kopf.Memo, **_: Any) -> None:
    ctx: reconcile.Context = memo.ctx
    async with ctx.metrics.observe("sync"):
        await reconcile.sync(ctx, body)
