"""The operator's own Prometheus metrics, on their own port (not the trainer's)."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import kopf
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, start_http_server

from kuberl.spec import PHASES


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
        self._phases: dict[tuple[str, str], str] = {}

    def serve(self, port: int) -> None:
        start_http_server(port, registry=self.registry)

    def set_phase(self, namespace: str, name: str, phase: str | None) -> None:
        """Track each job's phase and recount: a gauge per (namespace, phase), zeros included."""
        key = (namespace, name)
        if phase is None:
            self._phases.pop(key, None)
        else:
            self._phases[key] = phase
        namespaces = {ns for ns, _ in self._phases} | {namespace}
        for ns in namespaces:
            for p in PHASES:
                count = sum(1 for (n, _), v in self._phases.items() if n == ns and v == p)
                self.jobs.labels(namespace=ns, phase=p).set(count)

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
