"""Replicated sessions (NUWA-3, NUWA-4): creation, ownership, close, expiry with their ephemerals."""

from __future__ import annotations

import pytest
from coord_fixtures import ALICE, BOB, Harness, fingerprint

from feitian.coord.core import (
    CloseSession,
    CoordLimits,
    Created,
    CreateSession,
    EventKind,
    ExpireSessions,
    LeaderTermStarted,
    SessionClosed,
    SessionsExpired,
    StartLeaderTerm,
)
from feitian.errors import (
    InvalidArgumentError,
    OverloadedError,
    PermissionDeniedError,
    SessionExpiredError,
)


@pytest.fixture
def h() -> Harness:
    h = Harness()
    h.create("/svc/")
    return h


def test_sessions_get_increasing_ids_and_are_reported_to_the_tracker(h: Harness) -> None:
    assert h.session() == 1
    assert h.sm.last_applied.sessions_started == ((1, 10_000),)
    assert h.session(ttl_ms=2_000) == 2
    assert h.sm.session_ttls() == ((1, 10_000), (2, 2_000))
    info = h.sm.session(1)
    assert (info.owner, info.ttl_ms, info.ephemerals) == (ALICE, 10_000, ())
    assert h.sm.revision == 1  # sessions take no revision


@pytest.mark.parametrize("ttl_ms", [999, 300_001])
def test_ttl_outside_the_bounds_is_refused(h: Harness, ttl_ms: int) -> None:
    error = h.apply(CreateSession(principal=ALICE, ttl_ms=ttl_ms))
    assert isinstance(error, InvalidArgumentError) and f"ttl_ms {ttl_ms} is outside" in error.message


def test_session_count_is_bounded() -> None:
    h = Harness(CoordLimits(max_sessions=1))
    h.session()
    assert isinstance(h.apply(CreateSession(principal=ALICE, ttl_ms=5_000)), OverloadedError)


def test_only_the_owner_uses_a_session(h: Harness) -> None:
    session = h.session(principal=ALICE)
    error = h.create("/svc/x", principal=BOB, ephemeral=True, session_id=session)
    assert isinstance(error, PermissionDeniedError) and "belongs to another principal" in error.message
    error = h.apply(CloseSession(principal=BOB, session_id=session))
    assert isinstance(error, PermissionDeniedError)
    assert session in h.sm.sessions


def test_writes_under_a_gone_session_fail_with_session_expired(h: Harness) -> None:
    error = h.create("/svc/x", ephemeral=True, session_id=5)
    assert isinstance(error, SessionExpiredError)
    assert error.message == "create /svc/x: session 0x5 never existed"
    session = h.session()
    h.apply(CloseSession(principal=ALICE, session_id=session))
    h.create("/svc/f")
    error = h.set("/svc/f", b"", session_id=session)
    assert isinstance(error, SessionExpiredError)
    error = h.create("/svc/y", session_id=session)  # even a persistent write tied to the session
    assert isinstance(error, SessionExpiredError) and "expired or was closed" in error.message


def test_expiry_removes_exactly_its_ephemerals_at_one_revision(h: Harness) -> None:
    mine, other = h.session(), h.session()
    for name in ["a", "b", "c"]:
        h.create(f"/svc/{name}", ephemeral=True, session_id=mine)
    h.create("/svc/persistent", session_id=mine)
    h.create("/svc/theirs", ephemeral=True, session_id=other)
    revision = h.sm.revision
    result = h.ok(ExpireSessions(session_ids=(mine,), epoch=0), SessionsExpired)
    assert result.session_ids == (mine,)
    assert result.deleted == ("/svc/a", "/svc/b", "/svc/c")
    assert result.revision == revision + 1 == h.sm.revision
    assert [c.path for c in h.sm.list("/svc/").children] == ["/svc/persistent", "/svc/theirs"]
    events = h.sm.events_since(revision).events  # type: ignore[union-attr]
    assert [(e.revision, e.kind, e.path) for e in events] == [
        (revision + 1, EventKind.DELETED, p) for p in ("/svc/a", "/svc/b", "/svc/c")
    ]
    assert h.sm.last_applied.sessions_ended == (mine,)
    with pytest.raises(SessionExpiredError):
        h.sm.session(mine)


def test_expiry_of_sessions_without_ephemerals_takes_no_revision(h: Harness) -> None:
    session = h.session()
    result = h.ok(ExpireSessions(session_ids=(session, 99), epoch=0), SessionsExpired)
    assert result.session_ids == (session,) and result.deleted == () and h.sm.revision == 1
    again = h.ok(ExpireSessions(session_ids=(session,), epoch=0), SessionsExpired)
    assert again.session_ids == ()


def test_an_expiry_from_an_older_leader_epoch_is_ignored(h: Harness) -> None:
    session = h.session()
    h.create("/svc/e", ephemeral=True, session_id=session)
    assert h.ok(StartLeaderTerm(epoch=4), LeaderTermStarted).epoch == 4
    before = fingerprint(h.sm)
    result = h.ok(ExpireSessions(session_ids=(session,), epoch=3), SessionsExpired)
    assert result.stale and result.session_ids == ()
    assert fingerprint(h.sm) == before
    assert h.ok(StartLeaderTerm(epoch=2), LeaderTermStarted).epoch == 4  # epochs never go back
    assert h.ok(ExpireSessions(session_ids=(session,), epoch=4), SessionsExpired).session_ids == (session,)


def test_expire_batch_is_bounded() -> None:
    h = Harness(CoordLimits(max_expire_batch=2))
    assert isinstance(h.apply(ExpireSessions(session_ids=(1, 2, 3), epoch=0)), InvalidArgumentError)


def test_close_deletes_ephemerals_and_is_idempotent(h: Harness) -> None:
    session = h.session()
    h.create("/svc/x", ephemeral=True, session_id=session)
    closed = h.ok(CloseSession(principal=ALICE, session_id=session), SessionClosed)
    assert closed.existed and closed.deleted == ("/svc/x",) and closed.revision == h.sm.revision
    again = h.ok(CloseSession(principal=ALICE, session_id=session), SessionClosed)
    assert not again.existed and again.deleted == ()
    assert isinstance(h.apply(CloseSession(principal=ALICE)), InvalidArgumentError)


def test_ephemerals_per_session_are_bounded() -> None:
    h = Harness(CoordLimits(max_ephemerals_per_session=2))
    session = h.session()
    for name in ("/a", "/b"):
        assert isinstance(h.create(name, ephemeral=True, session_id=session), Created)
    error = h.create("/c", ephemeral=True, session_id=session)
    assert isinstance(error, InvalidArgumentError) and "already owns 2 ephemeral nodes" in error.message
    h.delete("/a")
    assert isinstance(h.create("/c", ephemeral=True, session_id=session), Created)
    assert h.sm.session(session).ephemerals == ("/b", "/c")


def test_deleting_an_ephemeral_by_hand_detaches_it_from_the_session(h: Harness) -> None:
    session = h.session()
    h.create("/svc/x", ephemeral=True, session_id=session)
    h.delete("/svc/x", principal=BOB)
    h.create("/svc/x", principal=BOB)  # now persistent, someone else's
    result = h.ok(ExpireSessions(session_ids=(session,), epoch=0), SessionsExpired)
    assert result.deleted == () and h.sm.exists("/svc/x").exists


def test_create_session_takes_no_session_id(h: Harness) -> None:
    error = h.apply(CreateSession(principal=ALICE, ttl_ms=5_000, session_id=3))
    assert isinstance(error, InvalidArgumentError) and error.message == "create session: session_id must be 0"
