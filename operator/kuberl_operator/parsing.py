"""The custom resource as a validated model, parsed once per generation.

Parsing a job is pure but not free: a spec with a large tune domain takes milliseconds to seconds, and
kopf runs handlers on one event loop. Specs change only with `metadata.generation` (and the labels and
annotations that reach the children only with themselves), so the result (a job or its SpecError) is kept
per (uid, generation, labels, annotations) in a bounded LRU.
"""

from __future__ import annotations

import json
from collections import OrderedDict
from collections.abc import Mapping
from typing import Any

from kuberl.spec import RLTrainingJob, RLTrainingJobStatus, SpecError
from kuberl.spec import parse_job as _parse_job
from kuberl.spec.custom import deferred_custom_algorithms

Body = Mapping[str, Any]
CacheKey = tuple[str, int, str, str]


def job_document(body: Body) -> dict[str, Any]:
    # The operator's default images are not written into the spec: the builders pick the CPU or the
    # CUDA one per job (builders.Defaults), so the parsed job is the user's document alone.
    meta = body.get("metadata") or {}
    spec = body.get("spec")
    return {
        "apiVersion": body.get("apiVersion", "kuberl.io/v1alpha1"),
        "kind": body.get("kind", "RLTrainingJob"),
        "metadata": {
            k: meta[k]
            for k in ("name", "namespace", "uid", "generation", "labels", "annotations")
            if k in meta
        },
        "spec": spec if spec is not None else {},
    }


def parse_job(document: Mapping[str, Any]) -> RLTrainingJob:
    """kuberl.spec.parse_job without importing custom algorithms (`algorithm: pkg.mod:Class`): the
    operator never runs user code or torch; the trainer validates such a job fully when its pod starts."""
    with deferred_custom_algorithms():
        return _parse_job(document)


def current_status(body: Body) -> RLTrainingJobStatus | None:
    raw = body.get("status")
    if not isinstance(raw, Mapping):
        return None
    try:
        return RLTrainingJobStatus.model_validate(dict(raw))
    except ValueError:
        return None  # written by someone else: derive a fresh one rather than crash


def parse_body(body: Body) -> RLTrainingJob:
    """The custom resource as a validated model. Raises SpecError; a malformed status is ignored."""
    job = parse_job(job_document(body))
    job.status = current_status(body)
    return job


class ParseCache:
    """Parsed jobs (or their SpecError) by (uid, generation, labels, annotations)."""

    def __init__(self, size: int = 4096) -> None:
        self.size = size
        self._entries: OrderedDict[CacheKey, RLTrainingJob | SpecError] = OrderedDict()
        self.hits = 0
        self.misses = 0

    @staticmethod
    def key(body: Body, kind: str = "spec") -> CacheKey | None:
        meta = body.get("metadata") or {}
        uid, generation = meta.get("uid"), meta.get("generation")
        if not isinstance(uid, str) or not isinstance(generation, int):
            return None
        extra = json.dumps([meta.get("labels"), meta.get("annotations"), kind], sort_keys=True, default=str)
        return (uid, generation, extra, kind)

    def parse(self, body: Body, *, kind: str = "spec") -> RLTrainingJob:
        """Like parse_body, from the cache when this generation was parsed before. `kind` keeps
        documents that are not the live spec (a ConfigMap's copy) apart."""
        key = self.key(body, kind)
        cached = self._entries.get(key) if key is not None else None
        if cached is None:
            self.misses += 1
            try:
                cached = parse_job(job_document(body))
            except SpecError as error:
                cached = error
            if key is not None:
                self._entries[key] = cached
                if len(self._entries) > self.size:
                    self._entries.popitem(last=False)
        else:
            self.hits += 1
            assert key is not None
            self._entries.move_to_end(key)
        if isinstance(cached, SpecError):
            # A fresh exception each time: re-raising one instance would grow its traceback forever.
            raise SpecError(cached.problems, source=cached.source)
        # A copy: callers set .status on it.
        return cached.model_copy(update={"status": current_status(body)})

    def forget(self, uid: str) -> None:
        for key in [k for k in self._entries if k[0] == uid]:
            del self._entries[key]
