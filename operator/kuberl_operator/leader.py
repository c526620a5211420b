"""Leader election on a `coordination.k8s.io/v1` Lease, the way client-go's `leaderelection` does it.

Several operator replicas run; only the one holding the Lease runs kopf's handlers. The holder renews
the Lease every `retry_s`; if it cannot renew within `renew_deadline_s` it stops (kubelet restarts it
as a standby), so two leaders never act at once for longer than a renew deadline. A standby takes the
Lease once the holder has not renewed it for `duration_s`, judged by *its own* clock since it last saw
the record change (client-go's rule: no comparison of timestamps written by another machine, so clock
skew between nodes does not matter). Every write carries the read's resourceVersion, so two standbys
racing for an expired Lease cannot both win: the server refuses the second with 409.
kopf has no Lease election of its own (its "peering" pauses every operator of equal priority).
https://kubernetes.io/docs/concepts/architecture/leases/#leader-election
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import logging
import random
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import kubernetes
from kubernetes.client.exceptions import ApiException

log = logging.getLogger(__name__)

# client-go's defaults for controllers (controller-runtime uses the same).
LEASE_DURATION_S = 15.0
RENEW_DEADLINE_S = 10.0
RETRY_PERIOD_S = 2.0
REQUEST_TIMEOUT_S = 5.0


@dataclass(frozen=True)
class Record:
    """What a Lease says about its holder (the fields whose change proves the holder is alive)."""

    holder: str
    renew_time: str
    transitions: int
    duration_s: float


def record_of(lease: dict[str, Any]) -> Record:
    spec = lease.get("spec") or {}
    return Record(
        holder=str(spec.get("holderIdentity") or ""),
        renew_time=str(spec.get("renewTime") or ""),
        transitions=int(spec.get("leaseTransitions") or 0),
        duration_s=float(spec.get("leaseDurationSeconds") or LEASE_DURATION_S),
    )


def may_take(record: Record, *, identity: str, observed_at: float, now: float) -> bool:
    """Whether `identity` may write itself into a Lease holding `record`, first seen unchanged at
    monotonic time `observed_at`: it holds it already, nobody does (released), or the holder has not
    renewed for the lease duration."""
    if record.holder in ("", identity):
        return True
    return now >= observed_at + record.duration_s


def micro_time(at: datetime) -> str:
    """metav1.MicroTime (RFC 3339 with microseconds), which Lease times are."""
    return at.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def lease_spec(
    previous: Record | None, *, identity: str, duration_s: float, now: datetime, acquire_time: str | None
) -> dict[str, Any]:
    """The spec that makes `identity` the holder (a renewal keeps acquireTime and the transition count)."""
    changed_hands = previous is None or previous.holder != identity
    transitions = (previous.transitions if previous else 0) + (1 if changed_hands and previous else 0)
    stamp = micro_time(now)
    return {
        "holderIdentity": identity,
        "leaseDurationSeconds": max(1, round(duration_s)),
        "acquireTime": stamp if changed_hands or not acquire_time else acquire_time,
        "renewTime": stamp,
        "leaseTransitions": transitions,
    }


class LeaseElector:
    """Acquire, hold and release one Lease. API calls run in threads (the client is blocking)."""

    def __init__(
        self,
        *,
        namespace: str,
        name: str,
        identity: str,
        duration_s: float = LEASE_DURATION_S,
        renew_deadline_s: float = RENEW_DEADLINE_S,
        retry_s: float = RETRY_PERIOD_S,
        client: kubernetes.client.ApiClient | None = None,
        clock: Callable[[], float] = time.monotonic,
        on_change: Callable[[bool], None] | None = None,
    ) -> None:
        if not retry_s < renew_deadline_s < duration_s:
            raise ValueError(
                f"need retry ({retry_s}) < renew deadline ({renew_deadline_s}) < lease duration ({duration_s})"
            )
        self.namespace, self.name, self.identity = namespace, name, identity
        self.duration_s, self.renew_deadline_s, self.retry_s = duration_s, renew_deadline_s, retry_s
        self._api = kubernetes.client.CoordinationV1Api(client or kubernetes.client.ApiClient())
        self._clock = clock
        self._on_change = on_change or (lambda _leader: None)
        self._observed: Record | None = None
        self._observed_at = 0.0
        self.is_leader = False
        # A thread of its own: in the shared default executor a renewal queued behind the reconcilers'
        # API calls (1,000 jobs applied at once: not renewed for 10 s, and the leader stepped down).
        self._thread = concurrent.futures.ThreadPoolExecutor(1, thread_name_prefix="kuberl-lease")

    def _lease_body(self, spec: dict[str, Any], resource_version: str | None) -> dict[str, Any]:
        meta: dict[str, Any] = {"name": self.name, "namespace": self.namespace}
        if resource_version:
            meta["resourceVersion"] = resource_version
        return {"apiVersion": "coordination.k8s.io/v1", "kind": "Lease", "metadata": meta, "spec": spec}

    def _try_once(self) -> bool:
        """One read-and-write round (blocking). True when this process holds the Lease afterwards."""
        now_wall = datetime.now(UTC)
        try:
            lease = self._api.read_namespaced_lease(
                self.name, self.namespace, _request_timeout=REQUEST_TIMEOUT_S
            )
        except ApiException as exc:
            if exc.status != 404:
                raise
            spec = lease_spec(
                None, identity=self.identity, duration_s=self.duration_s, now=now_wall, acquire_time=None
            )
            try:
                self._api.create_namespaced_lease(
                    self.namespace, self._lease_body(spec, None), _request_timeout=REQUEST_TIMEOUT_S
                )
            except ApiException as create_exc:
                if create_exc.status == 409:  # another replica created it first
                    return False
                raise
            self._observed, self._observed_at = record_of({"spec": spec}), self._clock()
            return True
        raw = self._api.api_client.sanitize_for_serialization(lease)
        record = record_of(raw)
        if record != self._observed:
            self._observed, self._observed_at = record, self._clock()
        if not may_take(record, identity=self.identity, observed_at=self._observed_at, now=self._clock()):
            return False
        spec = lease_spec(
            record,
            identity=self.identity,
            duration_s=self.duration_s,
            now=now_wall,
            acquire_time=(raw.get("spec") or {}).get("acquireTime"),
        )
        try:
            self._api.replace_namespaced_lease(
                self.name,
                self.namespace,
                self._lease_body(spec, raw["metadata"].get("resourceVersion")),
                _request_timeout=REQUEST_TIMEOUT_S,
            )
        except ApiException as exc:
            if exc.status == 409:  # someone wrote it since our read: they won this round
                return False
            raise
        self._observed, self._observed_at = record_of({"spec": spec}), self._clock()
        return True

    async def _attempt(self) -> bool:
        try:
            return await asyncio.get_running_loop().run_in_executor(self._thread, self._try_once)
        except ApiException as exc:
            if exc.status == 403:
                # Not transient, and silent standby forever would hide it: say what to fix.
                log.error(
                    "Lease %s/%s: forbidden for this ServiceAccount (RBAC). The chart grants get/update on "
                    "the Lease named after the release, in its namespace: set KUBERL_LEASE_NAME / "
                    "KUBERL_LEASE_NAMESPACE to match, or KUBERL_LEADER_ELECTION=false for one replica.",
                    self.namespace,
                    self.name,
                )
            else:
                log.warning("Lease %s/%s: HTTP %s %s", self.namespace, self.name, exc.status, exc.reason)
            return False
        except Exception as exc:  # a network error: this round failed, the loop decides
            log.warning("Lease %s/%s: %s", self.namespace, self.name, exc)
            return False

    def _set_leader(self, leader: bool) -> None:
        if leader != self.is_leader:
            self.is_leader = leader
            self._on_change(leader)

    async def acquire(self) -> None:
        """Return once this process holds the Lease (standby until then)."""
        log.info("Waiting to lead: Lease %s/%s as %s", self.namespace, self.name, self.identity)
        while not await self._attempt():
            # Jitter so that standbys do not hit the server in lockstep (client-go: JitterFactor 1.2).
            await asyncio.sleep(self.retry_s * (1 + 0.2 * random.random()))
        log.info("Leading: Lease %s/%s held by %s", self.namespace, self.name, self.identity)
        self._set_leader(True)

    async def hold(self) -> None:
        """Renew every retry period; return when no renewal succeeded within the renew deadline (the
        Lease is lost: the caller must stop acting as leader at once)."""
        last_renewed = self._clock()
        while True:
            await asyncio.sleep(self.retry_s)
            remaining = self.renew_deadline_s - (self._clock() - last_renewed)
            try:
                renewed = await asyncio.wait_for(self._attempt(), timeout=max(0.1, remaining))
            except TimeoutError:
                renewed = False
            if renewed:
                last_renewed = self._clock()
            elif self._clock() - last_renewed >= self.renew_deadline_s:
                log.error(
                    "Lost the Lease %s/%s: not renewed for %.1f s",
                    self.namespace,
                    self.name,
                    self.renew_deadline_s,
                )
                self._set_leader(False)
                return

    def release(self) -> None:
        """Hand the Lease over at once on a clean shutdown (client-go ReleaseOnCancel): empty holder,
        so a standby takes it on its next try instead of waiting out the duration. Best effort."""
        if not self.is_leader:
            return
        try:
            lease = self._api.read_namespaced_lease(
                self.name, self.namespace, _request_timeout=REQUEST_TIMEOUT_S
            )
            raw = self._api.api_client.sanitize_for_serialization(lease)
            if record_of(raw).holder != self.identity:
                return
            spec = {**raw["spec"], "holderIdentity": None, "leaseDurationSeconds": 1}
            spec["renewTime"] = micro_time(datetime.now(UTC))
            body = self._lease_body(spec, raw["metadata"].get("resourceVersion"))
            self._api.replace_namespaced_lease(
                self.name, self.namespace, body, _request_timeout=REQUEST_TIMEOUT_S
            )
            log.info("Released the Lease %s/%s", self.namespace, self.name)
        except Exception as exc:
            log.warning("Could not release the Lease %s/%s: %s", self.namespace, self.name, exc)
        finally:
            self._set_leader(False)
