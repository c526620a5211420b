"""Kubernetes API calls of the operator (the official client, run in threads), nothing else.

Errors are translated once here: a transient failure (5xx, 429, connection) becomes
`kopf.TemporaryError`, so kopf retries the handler; a 409 on create means a previous pass (or a
previous operator process) already created the child, which is then read back instead.
"""

from __future__ import annotations

import asyncio
import functools
from collections.abc import Callable
from typing import Any, Protocol, TypeVar

import kopf
import kubernetes
from kubernetes.client.exceptions import ApiException

from kuberl.spec import GROUP, PLURAL, VERSION

Manifest = dict[str, Any]
T = TypeVar("T")

RAY_GROUP, RAY_VERSION, RAY_PLURAL = "ray.io", "v1", "rayjobs"
RETRY_DELAY_S = 5.0


def merge_patch(before: Any, after: Any) -> Any:
    """The JSON merge patch (RFC 7386) that turns `before` into `after`: `after` itself, plus a null for
    every object key `before` has and `after` lacks. A merge patch keeps the keys it does not name, so
    without those nulls a key that vanished (a custom metric name no longer reported) would stay on the
    server for ever. Lists and scalars are replaced whole, as a merge patch does; a null for a key the
    server no longer has is a no-op, so a stale `before` is harmless."""
    if not isinstance(after, dict):
        return after
    old = before if isinstance(before, dict) else {}
    patch: dict[str, Any] = {key: None for key in old if key not in after}
    for key, value in after.items():
        patch[key] = merge_patch(old.get(key), value)
    return patch


class Api(Protocol):
    """What the reconciler needs from Kubernetes (a fake implements it in the unit tests)."""

    async def get_job(self, namespace: str, name: str) -> Manifest | None: ...
    async def get_ray_job(self, namespace: str, name: str) -> Manifest | None: ...
    async def get_config_map(self, namespace: str, name: str) -> Manifest | None: ...
    async def create(self, manifest: Manifest) -> Manifest: ...
    async def patch_ray_job(self, namespace: str, name: str, patch: Manifest) -> None: ...
    async def replace_ray_job_spec(self, namespace: str, name: str, spec: Manifest) -> None: ...
    async def patch_config_map(self, namespace: str, name: str, patch: Manifest) -> None: ...
    async def delete(self, kind: str, namespace: str, name: str) -> None: ...
    async def patch_job_status(self, namespace: str, name: str, status: Manifest) -> None: ...


def load_config() -> None:
    """In-cluster credentials when running in a pod, else the kubeconfig (tests, laptops)."""
    try:
        kubernetes.config.load_incluster_config()
    except kubernetes.config.ConfigException:
        kubernetes.config.load_kube_config()


def _translate(exc: Exception, what: str) -> Exception:
    if isinstance(exc, ApiException):
        if exc.status in (429,) or (exc.status or 0) >= 500:
            return kopf.TemporaryError(f"{what}: HTTP {exc.status} {exc.reason}", delay=RETRY_DELAY_S)
        # 403 (RBAC), 422 (rejected by a schema): retrying soon will not help, but a fixed RBAC will.
        return kopf.TemporaryError(f"{what}: HTTP {exc.status} {exc.reason}: {exc.body!r:.300}", delay=60)
    if isinstance(exc, OSError | kubernetes.client.exceptions.OpenApiException):
        return kopf.TemporaryError(f"{what}: {exc}", delay=RETRY_DELAY_S)
    return exc


class KubernetesApi:
    """`Api` over the kubernetes client. Blocking calls run in the default thread pool."""

    def __init__(
        self,
        client: kubernetes.client.ApiClient | None = None,
        *,
        on_error: Callable[[int], None] | None = None,
    ) -> None:
        """`on_error(code)` is told of every failed call (the HTTP status; 0 when there was no response),
        tolerated ones excepted: the operator counts them, so RBAC denials (403) can alert."""
        self._on_error = on_error or (lambda _code: None)
        self._client = client or kubernetes.client.ApiClient()
        self._custom = kubernetes.client.CustomObjectsApi(self._client)
        self._core = kubernetes.client.CoreV1Api(self._client)
        self._net = kubernetes.client.NetworkingV1Api(self._client)

    async def _call(
        self, what: str, fn: Callable[..., T], *args: Any, tolerate: int | None = None
    ) -> T | None:
        """`fn(*args)` in a thread; errors become kopf errors (_translate) naming `what`, except the HTTP
        status `tolerate` (404 on a get or delete, 409 on a create), which returns None."""
        try:
            return await asyncio.to_thread(fn, *args)
        except ApiException as exc:
            if tolerate is not None and exc.status == tolerate:
                return None
            self._on_error(int(exc.status or 0))
            raise _translate(exc, what) from exc
        except Exception as exc:
            self._on_error(0)
            raise _translate(exc, what) from exc

    async def _ray_jobs(
        self, what: str, fn: Callable[..., T], namespace: str, *args: Any, tolerate: int | None = None
    ) -> T | None:
        """`fn` of CustomObjectsApi on the RayJobs of `namespace` (group, version and plural filled in)."""
        return await self._call(
            what, fn, RAY_GROUP, RAY_VERSION, namespace, RAY_PLURAL, *args, tolerate=tolerate
        )

    async def get_job(self, namespace: str, name: str) -> Manifest | None:
        obj: Manifest | None = await self._call(
            f"get RLTrainingJob {namespace}/{name}",
            self._custom.get_namespaced_custom_object,
            GROUP,
            VERSION,
            namespace,
            PLURAL,
            name,
            tolerate=404,
        )
        return obj

    async def get_ray_job(self, namespace: str, name: str) -> Manifest | None:
        obj: Manifest | None = await self._ray_jobs(
            f"get RayJob {namespace}/{name}",
            self._custom.get_namespaced_custom_object,
            namespace,
            name,
            tolerate=404,
        )
        return obj

    async def get_config_map(self, namespace: str, name: str) -> Manifest | None:
        what = f"get ConfigMap {namespace}/{name}"
        obj = await self._call(what, self._core.read_namespaced_config_map, name, namespace, tolerate=404)
        if obj is None:
            return None
        manifest: Manifest = self._core.api_client.sanitize_for_serialization(obj)
        return manifest

    async def create(self, manifest: Manifest) -> Manifest:
        """Already there (409: an earlier pass or process created it) counts as created: the
        deterministic name makes it ours."""
        kind = manifest["kind"]
        ns = manifest["metadata"]["namespace"]
        name = manifest["metadata"]["name"]
        what = f"create {kind} {ns}/{name}"
        if kind == "ConfigMap":
            await self._call(what, self._core.create_namespaced_config_map, ns, manifest, tolerate=409)
        elif kind == "NetworkPolicy":
            await self._call(what, self._net.create_namespaced_network_policy, ns, manifest, tolerate=409)
        elif kind == "RayJob":
            await self._ray_jobs(
                what, self._custom.create_namespaced_custom_object, ns, manifest, tolerate=409
            )
        else:
            raise ValueError(f"unexpected kind {kind}")
        return manifest

    async def patch_ray_job(self, namespace: str, name: str, patch: Manifest) -> None:
        await self._patch_ray_job(f"patch RayJob {namespace}/{name}", namespace, name, patch)

    async def replace_ray_job_spec(self, namespace: str, name: str, spec: Manifest) -> None:
        """Set the RayJob's whole spec. A JSON Patch `replace`, not a merge patch: a merge patch would
        keep every field the new spec no longer has (a removed worker group, node selector or
        toleration). The content type must be said explicitly: for custom objects the client sends
        merge-patch+json whatever the body, and a real API server refuses a list as a merge patch
        (400 "cannot unmarshal array")."""
        body = [{"op": "replace", "path": "/spec", "value": spec}]
        await self._patch_ray_job(
            f"replace RayJob {namespace}/{name} spec",
            namespace,
            name,
            body,
            content_type="application/json-patch+json",
        )

    async def _patch_ray_job(
        self,
        what: str,
        namespace: str,
        name: str,
        body: Manifest | list[Any],
        *,
        content_type: str = "application/merge-patch+json",
    ) -> None:
        patch = functools.partial(self._custom.patch_namespaced_custom_object, _content_type=content_type)
        await self._ray_jobs(what, patch, namespace, name, body)

    async def patch_config_map(self, namespace: str, name: str, patch: Manifest) -> None:
        what = f"patch ConfigMap {namespace}/{name}"
        await self._call(what, self._core.patch_namespaced_config_map, name, namespace, patch)

    async def delete(self, kind: str, namespace: str, name: str) -> None:
        """Already gone (404) counts as deleted."""
        what = f"delete {kind} {namespace}/{name}"
        if kind == "ConfigMap":
            await self._call(what, self._core.delete_namespaced_config_map, name, namespace, tolerate=404)
        else:
            await self._ray_jobs(
                what, self._custom.delete_namespaced_custom_object, namespace, name, tolerate=404
            )

    async def patch_job_status(self, namespace: str, name: str, status: Manifest) -> None:
        """A job deleted meanwhile (404) has nothing left to describe."""
        await self._call(
            f"patch RLTrainingJob {namespace}/{name} status",
            self._custom.patch_namespaced_custom_object_status,
            GROUP,
            VERSION,
            namespace,
            PLURAL,
            name,
            {"status": status},
            tolerate=404,
        )
