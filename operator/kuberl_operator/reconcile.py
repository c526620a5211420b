"""What each handler does, against the `Api` protocol (kopf decorators live in handlers.py).

Order of operations follows KubeRay: child names are derived deterministically and saved in status
before anything is created, and creation tolerates "already exists", so a crash or restart at any
point converges to exactly one RayJob per attempt.

Only the leader writes a job's status (handlers run only while this process holds the Lease), so the
status it last wrote is the newest one: it is kept in memory (`Context.statuses`) and preferred over the
status in a handler's body, which may predate that write (a watch event still in flight).
"""

from __future__ import annotations

import asyncio
import logging
import math
from collections.abc import Awaitable, Callable, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import kopf
import yaml

from kuberl.spec import RLTrainingJob, RLTrainingJobStatus, SpecError
from kuberl.spec.resume import fixed_field_changes
from kuberl_operator.builders import (
    DEFAULTS,
    Defaults,
    build_children,
    build_config_map,
    build_ray_job,
    names_for,
)
from kuberl_operator.k8s import Api, merge_patch
from kuberl_operator.labels import SPEC_FILE
from kuberl_operator.metrics import OperatorMetrics
from kuberl_operator.parsing import ParseCache, current_status
from kuberl_operator.status import (
    COND_SPEC_CHANGE_PENDING,
    TERMINAL_PHASES,
    Event,
    checkpoint_condition,
    deadline_remaining,
    derive_status,
    initial_status,
    invalid_edit_status,
    invalid_status,
    outcome_of,
    set_condition,
    valid_again,
)

Body = Mapping[str, Any]
EventSink = Callable[[Body, str, str, str], None]
ProgressReader = Callable[[RLTrainingJob, Mapping[str, Any] | None], Awaitable[dict[str, Any] | None]]

log = logging.getLogger(__name__)

# Fields a running job takes only on its next attempt (see docs/operator.md, "Spec edits").
SPEC_CHANGE_MESSAGE = (
    "spec changed while running: applied on the next attempt (a retry, or resume after suspend)"
)


@dataclass
class Context:
    api: Api
    metrics: OperatorMetrics
    now: Callable[[], datetime]
    event: EventSink
    progress: ProgressReader
    # The platform's defaults (trainer images, NetworkPolicy), applied by the builders.
    defaults: Defaults = DEFAULTS
    parsed: ParseCache = field(default_factory=ParseCache)
    # The status this process last wrote, by job uid (see the module docstring).
    statuses: dict[str, dict[str, Any]] = field(default_factory=dict)
    # The last RayJob seen on the watch (its name, spec.suspend and status), by (namespace, name): a
    # progress pass needs no GET.
    rayjobs: dict[tuple[str, str], dict[str, Any]] = field(default_factory=dict)
    # One pass at a time per job: a RayJob event and a progress pass must not interleave their writes.
    locks: dict[tuple[str, str], asyncio.Lock] = field(default_factory=dict)

    def lock(self, namespace: str, name: str) -> asyncio.Lock:
        return self.locks.setdefault((namespace, name), asyncio.Lock())

    def known(self, body: Body) -> Body:
        """`body` with the status this process last wrote, when it wrote one."""
        uid = (body.get("metadata") or {}).get("uid")
        cached = self.statuses.get(uid) if isinstance(uid, str) else None
        return {**body, "status": cached} if cached is not None else body

    def parse(self, body: Body) -> RLTrainingJob:
        return self.parsed.parse(body)

    def forget(self, body: Body) -> None:
        ns, name = _where(body)
        uid = (body.get("metadata") or {}).get("uid")
        if isinstance(uid, str):
            self.statuses.pop(uid, None)
            self.parsed.forget(uid)
        self.locks.pop((ns, name), None)


def _generation(body: Body) -> int | None:
    gen = (body.get("metadata") or {}).get("generation")
    return gen if isinstance(gen, int) else None


def remember_ray_job(ctx: Context, rayjob: Mapping[str, Any], *, deleted: bool = False) -> None:
    """Keep what a pass needs of a RayJob seen on the watch (not the whole object: a pod template
    per RayJob would cost megabytes at a thousand jobs)."""
    meta = rayjob.get("metadata") or {}
    key = (str(meta.get("namespace") or "default"), str(meta.get("name") or ""))
    if deleted:
        ctx.rayjobs.pop(key, None)
        return
    ctx.rayjobs[key] = {
        "metadata": {"name": key[1], "namespace": key[0]},
        "spec": {"suspend": bool((rayjob.get("spec") or {}).get("suspend"))},
        "status": dict(rayjob.get("status") or {}),
    }


def _where(body: Body) -> tuple[str, str]:
    meta = body.get("metadata") or {}
    return str(meta.get("namespace") or "default"), str(meta.get("name") or "")


async def _write_status(ctx: Context, body: Body, status: RLTrainingJobStatus) -> None:
    """Through the status subresource, always with observedGeneration = the generation acted on, so
    kstatus (Argo CD, Flux, `kubectl wait`) sees the job as Current after every edit."""
    ns, name = _where(body)
    status = status.model_copy(update={"observed_generation": _generation(body)})
    wire = status.to_wire()
    known = ctx.known(body)
    before = current_status(known)
    # Nulls for what the new status no longer has (a vanished custom metric name): see merge_patch.
    await ctx.api.patch_job_status(ns, name, merge_patch(known.get("status"), wire))
    if status.phase == "Failed" and (before is None or before.phase != "Failed"):
        reason = next((c.reason for c in status.conditions if c.type == "Failed"), "Unknown")
        ctx.metrics.failures.labels(namespace=ns, reason=reason).inc()
    uid = (body.get("metadata") or {}).get("uid")
    if isinstance(uid, str):
        ctx.statuses[uid] = wire
    ctx.metrics.set_phase(ns, name, status.phase)


def _post(ctx: Context, body: Body, events: Iterable[Event]) -> None:
    for event in events:
        ctx.event(body, event.type, event.reason, event.message)


async def reject_invalid(ctx: Context, body: Body, error: SpecError) -> None:
    """Failed + Valid=False naming the field; no children; PermanentError so kopf stops retrying."""
    status = invalid_status(current_status(body), error, generation=_generation(body), now=ctx.now())
    await _write_status(ctx, body, status)
    ctx.event(body, "Warning", "InvalidSpec", status.message or "invalid spec")
    raise kopf.PermanentError(str(error))


async def reject_edit(ctx: Context, body: Body, status: RLTrainingJobStatus, error: SpecError) -> None:
    """An invalid edit of a job that has children: say so (Valid=False naming the field, a Warning
    Event) and leave the RayJob alone; it keeps training with the last valid spec, in its ConfigMap."""
    new = invalid_edit_status(status, error, generation=_generation(body), now=ctx.now())
    await _write_status(ctx, body, new)
    ctx.event(
        body, "Warning", "InvalidSpecEdit", next(c.message for c in new.conditions if c.type == "Valid")
    )


async def last_valid_job(ctx: Context, body: Body) -> RLTrainingJob | None:
    """The job as its current attempt runs it: the spec in that attempt's ConfigMap, with the live
    metadata and status. None when there is no such ConfigMap (the job never started)."""
    status = current_status(body)
    if status is None or status.config_map_name is None:
        return None
    ns, _ = _where(body)
    config_map = await ctx.api.get_config_map(ns, status.config_map_name)
    if config_map is None:
        return None
    try:
        stored = yaml.safe_load((config_map.get("data") or {}).get(SPEC_FILE) or "") or {}
        job = ctx.parsed.parse(
            {**body, "spec": stored.get("spec") if isinstance(stored, Mapping) else None},
            kind=f"configmap:{status.config_map_name}",
        )
    except (SpecError, yaml.YAMLError) as exc:
        log.warning("ConfigMap %s/%s does not hold a valid job: %s", ns, status.config_map_name, exc)
        return None
    return job


async def fixed_field_edit(ctx: Context, body: Body, job: RLTrainingJob) -> SpecError | None:
    """An edit of a started job that every later attempt (all `resume: auto`) would refuse: the
    algorithm, env, networks, observation filter or agents changed from the spec its current attempt
    runs (kuberl.spec.resume). None when there is nothing to compare with or nothing fixed changed."""
    running = await last_valid_job(ctx, body)
    if running is None:
        return None
    since = f"ConfigMap {job.status.config_map_name}" if job.status else "the running attempt"
    problems = fixed_field_changes(running, job, since=since)
    return SpecError(problems) if problems else None


def _refused_edit(status: RLTrainingJobStatus | None) -> bool:
    """The last edit was refused (Valid=False, InvalidSpecEdit): the attempt runs the ConfigMap's spec."""
    return status is not None and any(
        c.type == "Valid" and c.status == "False" and c.reason == "InvalidSpecEdit" for c in status.conditions
    )


def _deadline(job: RLTrainingJob, now: datetime) -> int | None:
    """What is left of the job-wide deadline: it covers all attempts together (as a Kubernetes Job's
    does), not each one."""
    remaining = deadline_remaining(job, now=now)
    return None if remaining is None else max(1, math.ceil(remaining))


def ray_job_manifest(ctx: Context, job: RLTrainingJob, *, attempt: int, resume: str) -> dict[str, Any]:
    """The builder's RayJob, with `activeDeadlineSeconds` cut to what is left of the deadline."""
    return build_ray_job(
        job, attempt=attempt, resume=resume, defaults=ctx.defaults, deadline_seconds=_deadline(job, ctx.now())
    )


async def ensure_children(ctx: Context, job: RLTrainingJob, *, attempt: int, resume: str) -> None:
    """Create the ConfigMap, the NetworkPolicy, then the RayJob, of one attempt; each idempotent.
    The first attempt, created as the job starts, gets the whole deadline (not the deadline less the
    second or so since startTime, which only made the RayJob's value jitter); later ones what is left."""
    first = attempt == 0 and not _started(job)
    children = build_children(
        job,
        attempt=attempt,
        resume=resume,
        defaults=ctx.defaults,
        deadline_seconds=job.spec.active_deadline_seconds if first else _deadline(job, ctx.now()),
    )
    for manifest in children:
        await ctx.api.create(manifest)


def _resume_for(job: RLTrainingJob, attempt: int) -> str:
    """Attempt 0 starts as the user asked, unless it already ran (its RayJob was deleted by someone
    and is being recreated: starting over would throw away what it trained); any later attempt
    continues from the newest checkpoint."""
    return job.spec.resume if attempt == 0 and not _started(job) else "auto"


def _started(job: RLTrainingJob) -> bool:
    """Whether the job's training has begun (it ran, or was suspended after running)."""
    status = job.status
    return status is not None and (status.iteration is not None or status.phase not in (None, "Pending"))


async def create(ctx: Context, body: Body) -> None:
    body = ctx.known(body)
    try:
        job = ctx.parse(body)
    except SpecError as error:
        await reject_invalid(ctx, body, error)
        return
    status = job.status
    fresh = status is None or status.ray_job_name is None
    if fresh:
        status = initial_status(job, now=ctx.now())
        await _write_status(ctx, body, status)  # names first: a crash after this cannot duplicate
    assert status is not None
    job.status = status
    await ensure_children(ctx, job, attempt=status.attempt, resume=_resume_for(job, status.attempt))
    if fresh:
        ctx.event(body, "Normal", "RayJobCreated", f"created RayJob {status.ray_job_name} (attempt 0)")
        persisted, reason, message = checkpoint_condition(job)
        if persisted == "False" and job.spec.backoff_limit > 0:
            ctx.event(body, "Warning", reason, message)


async def set_suspended(ctx: Context, job: RLTrainingJob) -> None:
    """Mirror spec.suspend into the current RayJob. Resuming re-renders it from the current spec with
    `resume: auto`, so pending spec edits apply and training continues from the newest checkpoint."""
    status = job.status
    if status is None or status.ray_job_name is None or status.phase in TERMINAL_PHASES:
        return
    ns = job.metadata.namespace or "default"
    seen = ctx.rayjobs.get((ns, status.ray_job_name))
    if seen is not None:
        seen["spec"]["suspend"] = job.spec.suspend  # until the watch shows the RayJob as patched
    if job.spec.suspend:
        await ctx.api.patch_ray_job(ns, status.ray_job_name, {"spec": {"suspend": True}})
        return
    remaining = deadline_remaining(job, now=ctx.now())
    if remaining is not None and remaining <= 0:
        return  # not resumed: the next pass fails the job with DeadlineExceeded
    ray_job = ray_job_manifest(ctx, job, attempt=status.attempt, resume="auto")
    config_map = build_config_map(job, attempt=status.attempt)
    await ctx.api.patch_config_map(ns, config_map["metadata"]["name"], {"data": config_map["data"]})
    await ctx.api.replace_ray_job_spec(ns, status.ray_job_name, ray_job["spec"])


def changed_spec_fields(diff: Iterable[Any]) -> set[str]:
    """Top-level spec fields in a kopf diff ((op, field path, old, new) tuples)."""
    fields: set[str] = set()
    for item in diff:
        path = tuple(item[1])
        if len(path) >= 2 and path[0] == "spec":
            fields.add(str(path[1]))
        elif path == ("spec",):
            fields.add("*")
    return fields


async def update(ctx: Context, body: Body, diff: Iterable[Any]) -> None:
    body = ctx.known(body)
    try:
        job = ctx.parse(body)
    except SpecError as error:
        current = current_status(body)
        if current is not None and current.ray_job_name is not None:
            await reject_edit(ctx, body, current, error)  # started: keep what is running
        else:
            await reject_invalid(ctx, body, error)
        return
    if job.status is None or job.status.ray_job_name is None:
        await create(ctx, body)  # it was invalid before (no children): a fixed spec starts it now
        return
    refused = await fixed_field_edit(ctx, body, job)
    if refused is not None:
        await reject_edit(ctx, body, job.status, refused)  # started: keep what is running
        return
    fields = changed_spec_fields(diff)
    status = valid_again(job.status, job, generation=_generation(body), now=ctx.now())
    if "suspend" in fields:
        await set_suspended(ctx, job)
        if not job.spec.suspend:
            status = status.model_copy(
                update={"conditions": [c for c in status.conditions if c.type != COND_SPEC_CHANGE_PENDING]}
            )
    elif fields and status.phase not in TERMINAL_PHASES:
        status = status.model_copy(
            update={
                "conditions": set_condition(
                    list(status.conditions),
                    COND_SPEC_CHANGE_PENDING,
                    "True",
                    reason="AppliedOnNextAttempt",
                    message=SPEC_CHANGE_MESSAGE + f" ({', '.join(sorted(fields))})",
                    now=ctx.now(),
                    generation=_generation(body),
                )
            }
        )
    job.status = status
    await sync(ctx, body, job=job)


async def sync(
    ctx: Context,
    body: Body,
    *,
    job: RLTrainingJob | None = None,
    rayjob: Mapping[str, Any] | None = None,
) -> None:
    """One pass: read the RayJob (given by a watch event, else the last one seen, else a GET) and the
    trainer's progress, write the derived status if it changed, act on retries and deadlines."""
    body = ctx.known(body)
    if job is None:
        try:
            job = ctx.parse(body)
        except SpecError:
            # An invalid edit of a started job: keep following its attempt, which runs the last valid
            # spec. A job that never started is already Failed with Valid=False (create/update).
            job = await last_valid_job(ctx, body)
            if job is None:
                return
        if _refused_edit(job.status):
            # A valid spec with a refused change of a fixed field (update): retries run the ConfigMap's.
            job = await last_valid_job(ctx, body) or job
    status = job.status
    if status is None or status.ray_job_name is None:
        return  # the create handler has not saved the names yet
    ns = job.metadata.namespace or "default"
    if status.phase in TERMINAL_PHASES:
        ctx.metrics.set_phase(ns, job.metadata.name, status.phase)
        return
    if rayjob is not None and (rayjob.get("metadata") or {}).get("name") != status.ray_job_name:
        return  # an event of an earlier attempt's RayJob: nothing to do for the job now
    if rayjob is None:
        rayjob = ctx.rayjobs.get((ns, status.ray_job_name)) or await ctx.api.get_ray_job(
            ns, status.ray_job_name
        )
    if rayjob is None:
        # Names saved but the operator stopped before creating (or a retry was interrupted, or someone
        # deleted the RayJob): create it.
        await ensure_children(ctx, job, attempt=status.attempt, resume=_resume_for(job, status.attempt))
        rayjob_status: Mapping[str, Any] | None = None
    else:
        rayjob_status = rayjob.get("status") or {}
        if bool((rayjob.get("spec") or {}).get("suspend")) != job.spec.suspend:
            await set_suspended(ctx, job)  # the update handler's toggle was lost (crash): converge
    progress = None
    if rayjob_status is not None and outcome_of(
        str(rayjob_status.get("jobDeploymentStatus") or ""), str(rayjob_status.get("jobStatus") or "")
    ) in ("running", "succeeded", "failed"):
        progress = await ctx.progress(job, rayjob_status)
    transition = derive_status(job, rayjob_status, progress, now=ctx.now())
    new = transition.status
    if transition.retry:
        new = new.model_copy(
            update={"conditions": [c for c in new.conditions if c.type != COND_SPEC_CHANGE_PENDING]}
        )
        await _write_status(ctx, body, new)  # the new attempt's names first, as on create
        ctx.metrics.retries.labels(namespace=ns).inc()
        job.status = new
        await ensure_children(ctx, job, attempt=new.attempt, resume="auto")
    elif new.to_wire() != (current_status(body) or RLTrainingJobStatus()).to_wire():
        await _write_status(ctx, body, new)
    else:
        ctx.metrics.set_phase(ns, job.metadata.name, new.phase)
    if transition.stop_ray_job:
        await ctx.api.delete("RayJob", ns, status.ray_job_name)  # frees the cluster (and its GPUs) now
    _post(ctx, body, transition.events)


async def delete(ctx: Context, body: Body) -> None:
    """Delete every attempt's children explicitly: garbage collection may be absent or slow."""
    body = ctx.known(body)
    ns, name = _where(body)
    status = current_status(body)
    # From the name alone: a job edited into an invalid spec still has the children of its attempts.
    for attempt in range((status.attempt if status else 0) + 1):
        names = names_for(name, attempt)
        await ctx.api.delete("RayJob", ns, names.ray_job)
        await ctx.api.delete("ConfigMap", ns, names.config_map)
    ctx.metrics.set_phase(ns, name, None)
    ctx.forget(body)
