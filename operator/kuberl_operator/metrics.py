"""The operator's own Prometheus metrics, on their own port (not the trainer's)."""

from __future__ import annotations

import time
from collections import Counter as Tally
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import kopf
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, start_http_server

from kuberl.spec import PHASES

# Reasons of a Failed condition (status.py); others are counted too, from their first failure on.
FAILURE_REASONS = ("InvalidSpec", "BackoffLimitExceeded", "DeadlineExceeded")


class OperatorMetrics:
    """One registry per operator process (tests build several without clashing on the global one)."""

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry or CollectorRegistry()
        self.jobs = Gauge(
            "kuberl_operator_jobs", "RLTrainingJobs by phase.", ["namespace", "phase"], registry=self.registry
        )
        self.reconciles = Counter(
            "kuberl_operator_reconciles_total",
            "Handler runs by result (success, temporary_error, permanent_error).",
            ["handler", "result"],
            registry=self.registry,
        )
        self.duration = Histogram(
            "kuberl_operator_reconcile_duration_seconds",
            "Handler run time.",
            ["handler"],
            registry=self.registry,
        )
        self.retries = Counter(
            "kuberl_operator_retries_total",
            "Failed RayJobs replaced by a new attempt.",
            ["namespace"],
            registry=self.registry,
        )
        self.api_errors = Counter(
            "kuberl_operator_api_errors_total",
            "Kubernetes API calls that failed, by HTTP status code (403: an RBAC denial; 0: no response).",
            ["code"],
            registry=self.registry,
        )
        self.api_errors.labels(code="403")  # exported at 0: the RBAC alert sees the first denial
        self.leader = Gauge(
            "kuberl_operator_leader",
            "1 while this replica holds the leader Lease and runs the handlers, else 0 (standby).",
            registry=self.registry,
        )
        self.progress_reads = Counter(
            "kuberl_operator_progress_reads_total",
            "Reads of a trainer's /status, by result (ok, unreachable, rejected: too large or not JSON).",
            ["result"],
            registry=self.registry,
        )
        # A counter, so alerts fire once per failure (edge) and can tell a typo (InvalidSpec) from a
        # training failure (BackoffLimitExceeded, DeadlineExceeded, …).
        self.failures = Counter(
            "kuberl_operator_job_failures_total",
            "RLTrainingJobs that entered the Failed phase, by the reason of their Failed condition.",
            ["namespace", "reason"],
            registry=self.registry,
        )
        self._phases: dict[tuple[str, str], str] = {}
        self._counts: Tally[tuple[str, str]] = Tally()

    def serve(self, port: int) -> None:
        start_http_server(port, registry=self.registry)

    def set_phase(self, namespace: str, name: str, phase: str | None) -> None:
        """Track each job's phase. O(1) per call: only the gauges of the old and new (namespace, phase)
        move, so a pass over N jobs costs O(N), not O(N²) as a full recount would."""
        key = (namespace, name)
        old = self._phases.pop(key, None)
        if phase is not None:
            self._phases[key] = phase
        if old == phase:
            if phase is not None:
                self._ensure_namespace(namespace)
            return
        self._ensure_namespace(namespace)
        for p, delta in ((old, -1), (phase, +1)):
            if p is not None:
                self._counts[(namespace, p)] += delta
                self.jobs.labels(namespace=namespace, phase=p).set(self._counts[(namespace, p)])

    def _ensure_namespace(self, namespace: str) -> None:
        """Every phase of a namespace is exported, zeros included, so `== 0` queries see a series."""
        if (namespace, PHASES[0]) not in self._counts:
            for p in PHASES:
                self._counts[(namespace, p)] += 0
                self.jobs.labels(namespace=namespace, phase=p).set(self._counts[(namespace, p)])
            # Zeros too, so the first failure is an increase (a counter born at 1 shows none).
            for reason in FAILURE_REASONS:
                self.failures.labels(namespace=namespace, reason=reason)

    @asynccontextmanager
    async def observe(self, handler: str) -> AsyncIterator[None]:
        start = time.perf_counter()
        result = "success"
        try:
            yield
        except kopf.PermanentError:
            result = "permanent_error"
            raise
        except Exception:
            # kopf retries everything but PermanentError, so anything else is a temporary error to it.
            result = "temporary_error"
            raise
        finally:
            self.reconciles.labels(handler=handler, result=result).inc()
            self.duration.labels(handler=handler).observe(time.perf_counter() - start)
