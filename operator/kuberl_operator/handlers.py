"""kopf handlers: decorators only; the work is in reconcile.py.

Run with `python -m kuberl_operator` (leader election, health and metrics servers: see __main__.py), or
`kopf run -m kuberl_operator.handlers` for a single replica without election.

What drives a pass:
- RLTrainingJob create / spec update / delete, and resume (every existing job once at start-up, so
  nothing missed while no operator ran is lost);
- the watch on the RayJobs the operator owns (label `app.kubernetes.io/managed-by: kuberl` and
  `kuberl.io/job`): KubeRay's status changes reach the job at once, with no polling of the API;
- a timer only on Running jobs, every KUBERL_SYNC_INTERVAL seconds (default 30), to mirror the
  trainer's progress; at most KUBERL_PROGRESS_CONCURRENCY (default 16) reads run at once.
Succeeded and Failed jobs have no timer and take no pass unless edited.
"""

from __future__ import annotations

import asyncio
import logging
import os
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any, cast

import aiohttp
import kopf

from kuberl.spec import GROUP, PLURAL, VERSION, RLTrainingJob
from kuberl_operator import builders, k8s, reconcile
from kuberl_operator.k8s import RAY_GROUP, RAY_PLURAL, RAY_VERSION
from kuberl_operator.labels import FINALIZER, LABEL_JOB, LABEL_MANAGED_BY, MANAGED_BY, PROGRESS_PREFIX
from kuberl_operator.metrics import OperatorMetrics
from kuberl_operator.progress import fetch_progress, status_url

# How often a Running job's trainer progress is read (seconds). Read once, at import, because kopf
# fixes a timer's interval when the decorator runs.
SYNC_INTERVAL_S = float(os.environ.get("KUBERL_SYNC_INTERVAL", "30"))
PROGRESS_CONCURRENCY = int(os.environ.get("KUBERL_PROGRESS_CONCURRENCY", "16"))
DEFAULT_METRICS_PORT = 8081
RESOURCE = (GROUP, VERSION, PLURAL)
RAY_JOBS = (RAY_GROUP, RAY_VERSION, RAY_PLURAL)
# A RayJob event whose pass fails transiently is tried again this often (event handlers get no kopf retry).
EVENT_ATTEMPTS = 3


class _QuietSyncTimer(logging.Filter):
    """kopf logs every successful timer run at INFO: one line per job every few seconds drowns the log."""

    def filter(self, record: logging.LogRecord) -> bool:
        return "Timer 'sync_progress' succeeded" not in record.getMessage()


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
    # One active replica is chosen by the Lease election in __main__.py before kopf starts; kopf's own
    # peering (which pauses all operators of equal priority) is off.
    settings.peering.standalone = True
    logging.getLogger("kopf.objects").addFilter(_QuietSyncTimer())
    # kuberl posts its own Events on transitions; kopf's per-log-line Events would drown them.
    settings.posting.level = logging.WARNING
    settings.watching.server_timeout = 300
    settings.watching.reconnect_backoff = 1.0

    metrics = memo.get("metrics")
    if metrics is None:  # `kopf run` without __main__: serve the metrics here
        metrics = OperatorMetrics()
        metrics.serve(int(os.environ.get("KUBERL_OPERATOR_METRICS_PORT", DEFAULT_METRICS_PORT)))
        memo.metrics = metrics
    session = aiohttp.ClientSession()
    template = os.environ.get("KUBERL_STATUS_URL_TEMPLATE")
    reads = asyncio.Semaphore(PROGRESS_CONCURRENCY)

    async def read_progress(
        job: RLTrainingJob, rayjob_status: Mapping[str, Any] | None
    ) -> dict[str, Any] | None:
        url = status_url(job, rayjob_status, url_template=template)
        if not url or session.closed:  # closed: the operator is stopping (cleanup ran before a timer)
            return None
        async with reads:
            data, result = await fetch_progress(session, url)
        metrics.progress_reads.labels(result=result).inc()
        return data

    def api_error(code: int) -> None:
        metrics.api_errors.labels(code=str(code)).inc()

    memo.session = session
    memo.ctx = reconcile.Context(
        api=k8s.KubernetesApi(on_error=api_error),
        metrics=metrics,
        now=_now,
        event=_post_event,
        progress=read_progress,
        defaults=builders.Defaults(
            image=os.environ.get("KUBERL_DEFAULT_IMAGE") or builders.DEFAULTS.image,
            gpu_image=os.environ.get("KUBERL_DEFAULT_GPU_IMAGE") or builders.DEFAULTS.gpu_image,
            network_policy=os.environ.get("KUBERL_NETWORK_POLICY", "true").lower() != "false",
        ),
    )


@kopf.on.cleanup()
async def close(memo: kopf.Memo, **_: Any) -> None:
    session = memo.get("session")
    if session is not None:
        await session.close()


def _key(body: kopf.Body) -> tuple[str, str]:
    return str(body.metadata.namespace or "default"), str(body.metadata.name)


@kopf.on.create(*RESOURCE)
async def on_create(body: kopf.Body, memo: kopf.Memo, **_: Any) -> None:
    ctx: reconcile.Context = memo.ctx
    async with ctx.metrics.observe("create"), ctx.lock(*_key(body)):
        await reconcile.create(ctx, body)


@kopf.on.update(*RESOURCE, field="spec")
async def on_update(body: kopf.Body, diff: kopf.Diff, memo: kopf.Memo, **_: Any) -> None:
    ctx: reconcile.Context = memo.ctx
    async with ctx.metrics.observe("update"), ctx.lock(*_key(body)):
        # kopf gives paths relative to `field`; reconcile expects them from the object root.
        spec_diff = [(op, ("spec", *tuple(path)), old, new) for op, path, old, new in diff]
        await reconcile.update(ctx, body, spec_diff)


@kopf.on.resume(*RESOURCE)
async def on_resume(body: kopf.Body, memo: kopf.Memo, **_: Any) -> None:
    """Once per existing job when this replica starts leading: catch up with what changed meanwhile."""
    ctx: reconcile.Context = memo.ctx
    async with ctx.metrics.observe("resume"), ctx.lock(*_key(body)):
        await reconcile.sync(ctx, body)


@kopf.on.delete(*RESOURCE)
async def on_delete(body: kopf.Body, memo: kopf.Memo, **_: Any) -> None:
    ctx: reconcile.Context = memo.ctx
    async with ctx.metrics.observe("delete"), ctx.lock(*_key(body)):
        await reconcile.delete(ctx, body)


def _is_running(status: kopf.Status, **_: Any) -> bool:
    return status.get("phase") == "Running"


@kopf.timer(*RESOURCE, interval=SYNC_INTERVAL_S, initial_delay=min(SYNC_INTERVAL_S, 1.0), when=_is_running)
async def sync_progress(body: kopf.Body, memo: kopf.Memo, **_: Any) -> None:
    ctx: reconcile.Context = memo.ctx
    async with ctx.metrics.observe("progress"), ctx.lock(*_key(body)):
        await reconcile.sync(ctx, body)


def _owned(labels: kopf.Labels, **_: Any) -> bool:
    return labels.get(LABEL_MANAGED_BY) == MANAGED_BY and bool(labels.get(LABEL_JOB))


@kopf.on.event(*RAY_JOBS, when=_owned)
async def on_ray_job(
    event: kopf.RawEvent, body: kopf.Body, labels: kopf.Labels, memo: kopf.Memo, **_: Any
) -> None:
    """A RayJob of ours changed: pass over its RLTrainingJob (read fresh: a watch body may lag)."""
    ctx: reconcile.Context = memo.ctx
    deleted = event.get("type") == "DELETED"
    reconcile.remember_ray_job(ctx, body, deleted=deleted)
    namespace, job_name = str(body.metadata.namespace or "default"), str(labels[LABEL_JOB])
    owners = {ref.get("uid") for ref in body.metadata.get("ownerReferences") or []}
    for attempt in range(EVENT_ATTEMPTS):
        try:
            async with ctx.metrics.observe("rayjob"), ctx.lock(namespace, job_name):
                parent = await ctx.api.get_job(namespace, job_name)
                if parent is None or (parent.get("metadata") or {}).get("uid") not in owners:
                    return  # deleted, or a same-named job that does not own this RayJob
                if (parent.get("metadata") or {}).get("deletionTimestamp"):
                    return  # being deleted: the delete handler owns it now
                await reconcile.sync(ctx, parent, rayjob=None if deleted else body)
            return
        except kopf.TemporaryError as exc:
            if attempt + 1 == EVENT_ATTEMPTS:
                raise
            await asyncio.sleep(exc.delay or 1.0)
