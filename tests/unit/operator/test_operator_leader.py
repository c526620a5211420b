"""The Lease rules of leader.py (the two-process failover runs against the real API server in
tests/integration)."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from kuberl_operator.leader import LeaseElector, Record, lease_spec, may_take, record_of

T0 = datetime(2026, 1, 1, 12, 0, 0, 123456, tzinfo=UTC)


def _record(holder: str, renew: str = "t1", transitions: int = 0) -> Record:
    return Record(holder=holder, renew_time=renew, transitions=transitions, duration_s=15)


def test_standby_waits_out_the_duration_on_its_own_clock() -> None:
    held = _record("a")
    assert not may_take(held, identity="b", observed_at=100.0, now=114.9)
    assert may_take(held, identity="b", observed_at=100.0, now=115.0)
    assert may_take(held, identity="a", observed_at=100.0, now=100.1)  # renewing one's own
    assert may_take(_record(""), identity="b", observed_at=100.0, now=100.0)  # released


def test_lease_spec_counts_transitions_and_keeps_acquire_time_on_renewal() -> None:
    first = lease_spec(None, identity="a", duration_s=15, now=T0, acquire_time=None)
    assert first == {
        "holderIdentity": "a",
        "leaseDurationSeconds": 15,
        "acquireTime": "2026-01-01T12:00:00.123456Z",
        "renewTime": "2026-01-01T12:00:00.123456Z",
        "leaseTransitions": 0,
    }
    renewed = lease_spec(record_of({"spec": first}), identity="a", duration_s=15, now=T0, acquire_time="x")
    assert (renewed["acquireTime"], renewed["leaseTransitions"]) == ("x", 0)
    taken = lease_spec(record_of({"spec": first}), identity="b", duration_s=15, now=T0, acquire_time="x")
    assert (taken["holderIdentity"], taken["acquireTime"], taken["leaseTransitions"]) == (
        "b",
        "2026-01-01T12:00:00.123456Z",
        1,
    )


def test_timings_must_nest() -> None:
    with pytest.raises(ValueError, match="renew deadline"):
        LeaseElector(namespace="ns", name="l", identity="a", duration_s=10, renew_deadline_s=12, retry_s=2)


class _FakeLeases:
    """An in-memory Lease store with the server's optimistic concurrency: a write whose
    resourceVersion is not the current one gets 409, a create of an existing name 409."""

    def __init__(self) -> None:
        import threading

        from kubernetes.client import ApiClient

        self.api_client = ApiClient()
        self.obj: dict | None = None  # type: ignore[type-arg]
        self.version = 0
        self.down = False
        self._lock = threading.Lock()

    def _check(self) -> None:
        from kubernetes.client.exceptions import ApiException

        if self.down:
            raise ApiException(status=503, reason="down")

    def read_namespaced_lease(self, name: str, namespace: str, **_: object) -> dict:  # type: ignore[type-arg]
        from kubernetes.client.exceptions import ApiException

        self._check()
        if self.obj is None:
            raise ApiException(status=404, reason="NotFound")
        import copy

        return copy.deepcopy(self.obj)

    def create_namespaced_lease(self, namespace: str, body: dict, **_: object) -> None:  # type: ignore[type-arg]
        from kubernetes.client.exceptions import ApiException

        self._check()
        with self._lock:
            if self.obj is not None:
                raise ApiException(status=409, reason="AlreadyExists")
            self.version += 1
            self.obj = {**body, "metadata": {**body["metadata"], "resourceVersion": str(self.version)}}

    def replace_namespaced_lease(self, name: str, namespace: str, body: dict, **_: object) -> None:  # type: ignore[type-arg]
        from kubernetes.client.exceptions import ApiException

        self._check()
        with self._lock:
            assert self.obj is not None
            if body["metadata"].get("resourceVersion") != self.obj["metadata"]["resourceVersion"]:
                raise ApiException(status=409, reason="Conflict")
            self.version += 1
            self.obj = {**body, "metadata": {**body["metadata"], "resourceVersion": str(self.version)}}


def _elector(store: _FakeLeases, identity: str) -> LeaseElector:
    elector = LeaseElector(
        namespace="ns", name="op", identity=identity, duration_s=0.6, renew_deadline_s=0.4, retry_s=0.08
    )
    elector._api = store  # type: ignore[assignment]
    return elector


def test_one_leader_takeover_after_expiry_and_release() -> None:
    """The election's rules end to end against a store that behaves like the API server (resource
    versions): one leader; a standby takes over only after the holder stops renewing for the lease
    duration; a leader that cannot renew steps down; a released Lease is taken at once."""
    import asyncio
    import time

    async def main() -> None:
        store = _FakeLeases()
        a, b = _elector(store, "a"), _elector(store, "b")
        await a.acquire()
        holding = asyncio.create_task(a.hold())
        waiting = asyncio.create_task(b.acquire())
        await asyncio.sleep(1.5)  # well past the duration: a renews, so b must still wait
        assert not waiting.done()
        assert not b.is_leader
        assert store.obj is not None
        assert store.obj["spec"]["holderIdentity"] == "a"

        holding.cancel()  # a dies without releasing (SIGKILL)
        died = time.monotonic()
        await asyncio.wait_for(waiting, timeout=5)
        took = time.monotonic() - died
        assert b.is_leader
        assert store.obj["spec"]["holderIdentity"] == "b"
        # The lease duration (0.6 s) counted from a's last renewal, plus a retry period or two.
        assert 0.4 <= took <= 2.5, took
        assert store.obj["spec"]["leaseTransitions"] == 1

        # b loses the server: it steps down within the renew deadline instead of acting on.
        store.down = True
        start = time.monotonic()
        await asyncio.wait_for(b.hold(), timeout=5)
        assert not b.is_leader
        assert time.monotonic() - start < 0.4 + 0.5
        store.down = False

        c = _elector(store, "c")
        await c.acquire()  # b's record has not changed for a duration: expired
        assert store.obj["spec"]["holderIdentity"] == "c"
        c.release()
        assert store.obj["spec"]["holderIdentity"] is None
        start = time.monotonic()
        await _elector(store, "d").acquire()  # released: no wait for the duration
        assert time.monotonic() - start < 0.5

    asyncio.run(main())
