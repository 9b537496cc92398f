"""The leader's side of sessions (coord/session_keeper.py) around a leader change: what a heartbeat is told."""

from __future__ import annotations

import types

import pytest

from feitian.coord.core import CoordStateMachine, CreateSession, SessionTracker, StartLeaderTerm
from feitian.coord.session_keeper import LeaderSessions
from feitian.errors import NotLeaderError, SessionExpiredError


class _Clock:
    def monotonic_ns(self) -> int:
        return 1_000_000_000


def _leader(sm: CoordStateMachine, tracker: SessionTracker) -> LeaderSessions:
    """A replica that has just won an election (the heartbeat is refused before any ReadIndex round)."""
    replica = types.SimpleNamespace(
        is_leader=True, node=types.SimpleNamespace(term=2), leader_address=None, config=types.SimpleNamespace(id=2)
    )
    return LeaderSessions(replica, sm, tracker, _Clock())  # type: ignore[arg-type]


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
