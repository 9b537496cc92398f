"""Session timing (NUWA-3): the leader's SessionTracker, the client's lease, and the contract between them."""

from __future__ import annotations

import heapq

import pytest
from coord_fixtures import Harness
from hypothesis import given, settings
from hypothesis import strategies as st

from feitian.coord.core import (
    Applied,
    ClientLease,
    ExpireSessions,
    LeaseState,
    SessionCreated,
    SessionsExpired,
    SessionTiming,
    SessionTracker,
    StartLeaderTerm,
)
from feitian.errors import InternalError, SessionExpiredError

MS = 1_000_000
T0 = 1_000_000 * MS  # an arbitrary monotonic start


def started(session_id: int, ttl_ms: int) -> Applied:
    return Applied(0, SessionCreated(session_id=session_id, ttl_ms=ttl_ms), sessions_started=((session_id, ttl_ms),))


def test_timing_numbers() -> None:
    timing = SessionTiming(9_000)
    assert (timing.heartbeat_interval_ms, timing.jeopardy_after_ms, timing.client_lease_ms) == (1_500, 3_000, 6_000)


def test_a_new_leader_gives_every_session_a_full_ttl_from_its_takeover() -> None:
    tracker = SessionTracker()
    tracker.become_leader(7, [(1, 1_000), (2, 5_000)], T0)
    assert tracker.deadline_ns(1) == T0 + 1_000 * MS and tracker.deadline_ns(2) == T0 + 5_000 * MS
    assert tracker.next_deadline_ns() == T0 + 1_000 * MS
    assert tracker.due(T0 + 999 * MS) is None
    command = tracker.due(T0 + 1_000 * MS)
    assert command == ExpireSessions(session_ids=(1,), epoch=7)
    assert tracker.due(T0 + 1_000 * MS) is None  # not proposed twice
    assert tracker.next_deadline_ns() == T0 + 5_000 * MS


def test_heartbeats_extend_from_their_arrival() -> None:
    tracker = SessionTracker()
    tracker.become_leader(1, [], T0)
    tracker.observe(started(3, 2_000), T0)
    assert tracker.heartbeat(3, T0 + 1_500 * MS) == 2_000
    assert tracker.deadline_ns(3) == T0 + 3_500 * MS
    assert tracker.due(T0 + 3_000 * MS) is None
    with pytest.raises(SessionExpiredError, match="has expired"):
        tracker.heartbeat(3, T0 + 3_500 * MS)  # too late: the deadline has passed
    with pytest.raises(SessionExpiredError, match="does not exist"):
        tracker.heartbeat(4, T0)


def test_a_session_being_expired_refuses_heartbeats_until_the_expiry_fails() -> None:
    tracker = SessionTracker()
    tracker.become_leader(1, [(1, 1_000)], T0)
    assert tracker.due(T0 + 2_000 * MS) is not None
    with pytest.raises(SessionExpiredError):
        tracker.heartbeat(1, T0 + 500 * MS)
    tracker.expiry_failed([1])
    assert tracker.due(T0 + 2_000 * MS) == ExpireSessions(session_ids=(1,), epoch=1)


def test_due_is_batched_earliest_first() -> None:
    tracker = SessionTracker(max_expire_batch=2)
    tracker.become_leader(1, [], T0)
    for session_id, ttl in [(1, 3_000), (2, 1_000), (3, 2_000)]:
        tracker.observe(started(session_id, ttl), T0)
    first = tracker.due(T0 + 10_000 * MS)
    second = tracker.due(T0 + 10_000 * MS)
    assert first is not None and first.session_ids == (2, 3)
    assert second is not None and second.session_ids == (1,)


def test_observe_follows_the_state_machine_and_ends_sessions() -> None:
    h = Harness()
    tracker = SessionTracker()
    h.ok(StartLeaderTerm(epoch=2), object)
    tracker.become_leader(2, h.sm.session_ttls(), T0)
    session = h.session(ttl_ms=1_000)
    tracker.observe(h.sm.last_applied, T0)
    command = tracker.due(T0 + 1_000 * MS)
    assert command == ExpireSessions(session_ids=(session,), epoch=2)
    h.ok(command, SessionsExpired)
    tracker.observe(h.sm.last_applied, T0 + 1_001 * MS)
    assert len(tracker) == 0 and tracker.next_deadline_ns() is None


def test_an_inactive_tracker_refuses_heartbeats_and_proposes_nothing() -> None:
    tracker = SessionTracker()
    with pytest.raises(InternalError, match="not active"):
        tracker.heartbeat(1, T0)
    tracker.observe(started(1, 1_000), T0)
    assert tracker.due(T0 + 10**12) is None
    tracker.become_leader(1, [(1, 1_000)], T0)
    tracker.step_down()
    assert not tracker.active and len(tracker) == 0


def test_the_deadline_heap_stays_bounded_under_heartbeats() -> None:
    tracker = SessionTracker()
    tracker.become_leader(1, [(1, 1_000), (2, 1_000)], T0)
    for step in range(10_000):
        tracker.heartbeat(1 + step % 2, T0 + step * MS // 10)
    assert len(tracker._heap) <= 2 * 2 + 65
    assert tracker.next_deadline_ns() == T0 + 9_998 * MS // 10 + 1_000 * MS


def test_client_lease_states() -> None:
    lease = ClientLease(9_000, T0)
    assert lease.state(T0) is LeaseState.SAFE
    assert lease.state(T0 + 2_999 * MS) is LeaseState.SAFE
    assert lease.state(T0 + 3_000 * MS) is LeaseState.JEOPARDY
    assert lease.next_heartbeat_ns(T0, T0 + 3_000 * MS) == T0 + 750 * MS  # faster in jeopardy
    assert lease.on_ack(T0 + 2_000 * MS, T0 + 3_500 * MS) is LeaseState.SAFE  # counted from the send time
    assert lease.expires_at_ns == T0 + 8_000 * MS
    assert lease.state(T0 + 8_000 * MS) is LeaseState.EXPIRED
    assert lease.on_ack(T0 + 7_999 * MS, T0 + 8_000 * MS) is LeaseState.EXPIRED  # too late: stays lost
    assert lease.state(T0) is LeaseState.EXPIRED


def test_an_old_ack_never_shortens_the_lease_and_expiry_from_the_server_is_final() -> None:
    lease = ClientLease(6_000, T0)
    lease.on_ack(T0 + 1_000 * MS, T0 + 1_100 * MS)
    lease.on_ack(T0 + 500 * MS, T0 + 1_200 * MS)
    assert lease.acked_sent_ns == T0 + 1_000 * MS
    lease.on_session_expired()
    assert lease.state(T0 + 1_300 * MS) is LeaseState.EXPIRED


@settings(max_examples=150, deadline=None)
@given(st.data())
def test_the_client_always_gives_up_before_the_server_expires(data: st.DataObject) -> None:
    """Random delays, losses, leader failovers and finally a partition: every acknowledged heartbeat leaves the
    client's lease ending strictly before the server expires the session."""
    ttl = data.draw(st.sampled_from([1_000, 3_000, 10_000]), "ttl")
    delay = st.integers(0, ttl)
    partition_at = data.draw(st.integers(0, 6 * ttl), "partition at")  # after it, no heartbeat arrives
    tracker = SessionTracker()
    tracker.become_leader(1, [], 0)
    lease_ms = SessionTiming(ttl).client_lease_ms
    arrival = data.draw(delay, "create arrives after")
    tracker.observe(started(1, ttl), arrival * MS)
    queue: list[tuple[int, int, str, int]] = []  # (time ms, order, kind, sent ms or gap)
    order = 0

    def push(at: int, kind: str, sent: int = 0) -> None:
        nonlocal order
        order += 1
        heapq.heappush(queue, (at, order, kind, sent))

    push(arrival + data.draw(delay), "ack", 0)
    for _ in range(data.draw(st.integers(0, 3), "failovers")):
        push(data.draw(st.integers(0, 6 * ttl)), "crash", data.draw(st.integers(0, 2 * ttl)))
    lease: ClientLease | None = None
    acked_sends: list[int] = []
    expired_at: int | None = None
    epoch, leader_up = 1, True
    while queue:
        now, _, kind, sent = heapq.heappop(queue)
        deadline = tracker.deadline_ns(1)
        if expired_at is None and tracker.due(now * MS) is not None:
            assert deadline is not None
            expired_at = deadline
            assert lease is None or lease.state(expired_at) is LeaseState.EXPIRED
        if expired_at is not None and kind != "ack":
            continue  # after the expiry only acknowledgements already in flight still arrive
        if kind == "ack":
            acked_sends.append(sent)
            if lease is None:
                lease = ClientLease(ttl, sent * MS)
                push(lease.next_heartbeat_ns(sent * MS, now * MS) // MS, "send")
            else:
                lease.on_ack(sent * MS, now * MS)
        elif kind == "send":
            assert lease is not None
            if lease.state(now * MS) is LeaseState.EXPIRED:
                continue
            push(lease.next_heartbeat_ns(now * MS, now * MS) // MS, "send")
            if now < partition_at and data.draw(st.integers(0, 3), "lost") != 0:
                push(now + data.draw(delay, "request delay"), "arrive", now)
        elif kind == "arrive":
            if leader_up:  # a deposed leader would fail its leadership confirmation and not answer
                try:
                    tracker.heartbeat(1, now * MS)
                except SessionExpiredError:
                    continue
                if data.draw(st.integers(0, 3), "ack lost") != 0:
                    push(now + data.draw(delay, "ack delay"), "ack", sent)
        elif kind == "crash" and leader_up:
            leader_up = False
            tracker.step_down()
            push(now + sent, "takeover")
        elif kind == "takeover":
            epoch += 1
            leader_up = True
            tracker.become_leader(epoch, [(1, ttl)], now * MS)
    if expired_at is None:  # nothing left in flight: the partition lasts, and the session does expire
        expired_at = tracker.deadline_ns(1)
        assert expired_at is not None and tracker.due(expired_at) is not None
    assert all(sent * MS + lease_ms * MS < expired_at for sent in acked_sends)
