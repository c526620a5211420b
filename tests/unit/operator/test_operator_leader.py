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
