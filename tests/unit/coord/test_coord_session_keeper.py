"""The leader's side of sessions (coord/server/session_keeper.py) around a leader change: what a heartbeat is told."""

from __future__ import annotations

import asyncio
import time
import types

import pytest

from feitian.base.clock import MonotonicClock, StallAdjustedClock
from feitian.coord.core import CoordStateMachine, CreateSession, SessionTracker, StartLeaderTerm
from feitian.coord.server.session_keeper import LeaderSessions
from feitian.errors import NotLeaderError, SessionExpiredError
from feitian.replica.duties import LeaderDuties
from feitian.testing.waiting import wait_for_condition


class _Clock:
    def monotonic_ns(self) -> int:
        return 1_000_000_000


def _leader(sm: CoordStateMachine, tracker: SessionTracker) -> LeaderSessions:
    """A replica that has just won an election (the heartbeat is refused before any ReadIndex round)."""
    replica = types.SimpleNamespace(
        is_leader=True, node=types.SimpleNamespace(term=2), leader_address=None, config=types.SimpleNamespace(id=2)
    )
    return LeaderSessions(LeaderDuties(replica), sm, tracker, _Clock())  # type: ignore[arg-type]


async def test_a_leader_taking_over_never_calls_a_session_it_has_not_applied_yet_expired() -> None:
    """A session created just before the old leader died may be committed but not yet applied by the new
    leader: until its StartLeaderTerm has applied, the answer is "not the leader yet" (the client retries), not
    SessionExpiredError (the client would give the session up for good)."""
    sessions = _leader(CoordStateMachine(), SessionTracker())
    with pytest.raises(NotLeaderError, match="taking over"):
        await sessions.heartbeat(1, "anonymous", 1.0)


async def test_an_active_leader_reports_an_unknown_session_as_expired() -> None:
    sm = CoordStateMachine()
    sm.apply_command(1, CreateSession(principal="anonymous", client_id="c", request_seq=1, ttl_ms=5_000))
    sm.apply_command(2, StartLeaderTerm(epoch=2))
    tracker = SessionTracker()
    tracker.become_leader(2, sm.session_ttls(), _Clock().monotonic_ns())
    with pytest.raises(SessionExpiredError):
        await _leader(sm, tracker).heartbeat(999, "anonymous", 1.0)


class _Stepper:
    """A fake clock moved by hand."""

    def __init__(self) -> None:
        self.now = 5_000_000_000

    def monotonic_ns(self) -> int:
        return self.now

    def wall_ns(self) -> int:
        return self.now


def test_the_session_clock_stands_still_while_the_loop_was_stalled() -> None:
    real = _Stepper()
    clock = StallAdjustedClock(real, tolerance_ns=25_000_000)
    intended = real.now + 50_000_000
    real.now = intended + 10_000_000  # 10 ms late: within the tolerance
    assert clock.woke(intended) == 0 and clock.monotonic_ns() == real.now
    intended = real.now + 50_000_000
    real.now = intended + 1_525_000_000  # a 1.5 s pause (beyond the tolerance)
    assert clock.woke(intended) == 1_500_000_000
    assert clock.monotonic_ns() == real.now - 1_500_000_000
    assert clock.longest_stall_ns == 1_500_000_000


async def test_a_stalled_leader_does_not_expire_sessions_for_the_time_it_was_stalled() -> None:
    """A real stall of the event loop (the test blocks it, as a GC pause or a long callback would) longer than a
    session's TTL: no expiry is proposed for it; once the leader has been responsive for the TTL, it is."""
    sm = CoordStateMachine()
    sm.apply_command(1, CreateSession(principal="anonymous", client_id="c", request_seq=1, ttl_ms=1000))
    sm.apply_command(2, StartLeaderTerm(epoch=2))
    assert sm.session_ttls() != ()
    proposed: list[bytes] = []

    async def propose(data: bytes, timeout: float | None = None) -> None:
        proposed.append(data)

    replica = types.SimpleNamespace(
        is_leader=True,
        node=types.SimpleNamespace(term=2),
        leader_address=None,
        config=types.SimpleNamespace(id=2),
        propose=propose,
    )
    clock = StallAdjustedClock(MonotonicClock())
    tracker = SessionTracker()
    tracker.become_leader(2, sm.session_ttls(), clock.monotonic_ns())
    keeper = LeaderSessions(LeaderDuties(replica), sm, tracker, clock)  # type: ignore[arg-type]
    task = asyncio.ensure_future(keeper.run())
    try:
        await wait_for_condition(lambda: keeper.polls >= 2, 5, "the keeper waiting for the next deadline")
        assert tracker.next_deadline_ns() is not None
        time.sleep(1.5)  # noqa: ASYNC251 - the stall itself (the loop is blocked), not a wait for a condition
        await wait_for_condition(lambda: clock.stalled_ns > 1_300_000_000, 5, "the stall counted")
        assert proposed == [] and keeper.expired_sessions == 0
        await wait_for_condition(lambda: bool(proposed), 5, "the expiry, once responsive for the TTL")
        assert keeper.expired_sessions == 1
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
