"""An in-memory `Api` and context for driving reconcile.py without a server."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from kuberl_operator.metrics import OperatorMetrics
from kuberl_operator.reconcile import Context


@dataclass
class FakeApi:
    objects: dict[tuple[str, str, str], dict[str, Any]] = field(default_factory=dict)
    statuses: list[dict[str, Any]] = field(default_factory=list)
    calls: list[tuple[str, ...]] = field(default_factory=list)

    async def get_job(self, namespace: str, name: str) -> dict[str, Any] | None:
        return self.objects.get(("RLTrainingJob", namespace, name))

    async def get_ray_job(self, namespace: str, name: str) -> dict[str, Any] | None:
        return self.objects.get(("RayJob", namespace, name))

    async def get_config_map(self, namespace: str, name: str) -> dict[str, Any] | None:
        return self.objects.get(("ConfigMap", namespace, name))

    async def create(self, manifest: dict[str, Any]) -> dict[str, Any]:
        key = (manifest["kind"], manifest["metadata"]["namespace"], manifest["metadata"]["name"])
        self.calls.append(("create", *key))
        self.objects.setdefault(key, manifest)  # a second create is a 409: the first one stays
        return self.objects[key]

    async def patch_ray_job(self, namespace: str, name: str, patch: dict[str, Any]) -> None:
        self.calls.append(("patch", "RayJob", namespace, name))
        obj = self.objects[("RayJob", namespace, name)]
        obj["spec"] = {**obj["spec"], **patch.get("spec", {})}

    async def replace_ray_job_spec(self, namespace: str, name: str, spec: dict[str, Any]) -> None:
        self.calls.append(("replace-spec", "RayJob", namespace, name))
        self.objects[("RayJob", namespace, name)]["spec"] = spec

    async def patch_config_map(self, namespace: str, name: str, patch: dict[str, Any]) -> None:
        self.calls.append(("patch", "ConfigMap", namespace, name))

    async def delete(self, kind: str, namespace: str, name: str) -> None:
        self.calls.append(("delete", kind, namespace, name))
        self.objects.pop((kind, namespace, name), None)

    async def patch_job_status(self, namespace: str, name: str, status: dict[str, Any]) -> None:
        self.statuses.append(status)


def make_context(
    api: FakeApi, events: list[tuple[str, str, str]], now: Callable[[], datetime] | None = None
) -> Context:
    async def no_progress(*_: Any) -> None:
        return None

    return Context(
        api=api,
        metrics=OperatorMetrics(),
        now=now or (lambda: datetime(2026, 1, 1, tzinfo=UTC)),
        event=lambda _body, type_, reason, message: events.append((type_, reason, message)),
        progress=no_progress,
    )
