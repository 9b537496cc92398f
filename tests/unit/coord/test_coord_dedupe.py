"""Retried writes return their first result instead of applying twice."""

from __future__ import annotations

from coord_fixtures import ALICE, BOB, Harness

from feitian.coord.core import (
    CloseSession,
    CoordLimits,
    CoordStateMachine,
    Created,
    CreateNode,
    CreateSession,
    ExpireSessions,
    SessionClosed,
    SessionCreated,
    SessionsExpired,
    encode_command,
)
from feitian.errors import AlreadyExistsError, ConflictError, InvalidArgumentError, SessionExpiredError
from feitian.replica.core.dedupe import client_key


def seq_create(seq: int, client: str = "client-1", principal: str = ALICE, **kw: object) -> CreateNode:
    return CreateNode(principal=principal, path="/q/job-", sequential=True, client_id=client, request_seq=seq, **kw)  # type: ignore[arg-type]


def test_a_retried_sequential_create_returns_the_original_node() -> None:
    h = Harness()
    h.create("/q/")
    first = h.ok(seq_create(1), Created)
    retry = h.apply(seq_create(1))
    assert retry == first
    assert h.sm.last_applied.duplicate and h.sm.last_applied.events == ()
    assert [c.path for c in h.sm.list("/q/").children] == ["/q/job-0000000000"]
    assert h.ok(seq_create(2), Created).stat.path == "/q/job-0000000001"


def test_a_retry_across_a_leader_failover_returns_the_original_result() -> None:
    # The old leader applied the create and crashed before answering; a new leader (another replica, here
    # restored from the old one's snapshot and then fed the same log tail) receives the retry.
    old = Harness()
    old.create("/q/")
    original = old.ok(seq_create(7), Created)
    new = CoordStateMachine()
    new.restore(old.sm.snapshot())
    retry = new.apply(old.index + 1, encode_command(seq_create(7)))
    assert retry == original
    assert new.list("/q/").directory.children == 1


def test_a_retried_failure_returns_the_same_error_even_if_it_would_now_succeed() -> None:
    h = Harness()
    h.create("/a", b"1")
    command = h.set("/a", b"x", expected_version=2, client_id="c", request_seq=1)
    assert isinstance(command, ConflictError)
    h.set("/a", b"2")  # now at version 2: the same request would succeed if re-executed
    retry = h.set("/a", b"x", expected_version=2, client_id="c", request_seq=1)
    assert isinstance(retry, ConflictError) and retry.message == command.message and retry.fields == command.fields
    assert h.sm.get("/a").value == b"2"


def test_requests_may_apply_out_of_order_within_the_window() -> None:
    h = Harness()
    h.create("/q/")
    assert h.ok(seq_create(2), Created).stat.path == "/q/job-0000000000"
    assert h.ok(seq_create(1), Created).stat.path == "/q/job-0000000001"
    assert h.apply(seq_create(2)).stat.path == "/q/job-0000000000"


def test_a_retry_older_than_the_window_is_refused() -> None:
    h = Harness(CoordLimits(dedupe_window=3))
    h.create("/q/")
    for seq in range(1, 6):
        h.ok(seq_create(seq), Created)
    assert h.apply(seq_create(3)).stat.path == "/q/job-0000000002"  # still remembered
    error = h.apply(seq_create(2))
    assert isinstance(error, InvalidArgumentError) and "older than the last 3 writes" in error.message
    assert error.hint == "keep at most 3 writes in flight per client"
    assert h.sm.list("/q/").directory.children == 5


def test_clients_are_forgotten_with_their_session() -> None:
    h = Harness()
    h.create("/q/")
    session = h.ok(CreateSession(principal=ALICE, ttl_ms=5_000, client_id="c", request_seq=1), SessionCreated)
    assert h.apply(CreateSession(principal=ALICE, ttl_ms=5_000, client_id="c", request_seq=1)) == session
    created = h.ok(seq_create(2, client="c", session_id=session.session_id, ephemeral=True), Created)
    assert h.apply(seq_create(2, client="c", session_id=session.session_id, ephemeral=True)) == created
    assert client_key(ALICE, "c") in h.sm.dedupe.clients
    h.ok(ExpireSessions(session_ids=(session.session_id,), epoch=0), SessionsExpired)
    assert client_key(ALICE, "c") not in h.sm.dedupe.clients and not h.sm.dedupe.by_session
    # The retry now meets the dead session, not a second create.
    assert isinstance(h.apply(seq_create(2, client="c", session_id=session.session_id)), SessionExpiredError)


def test_closing_a_session_is_answered_the_same_when_retried() -> None:
    h = Harness()
    session = h.session()
    close = CloseSession(principal=ALICE, session_id=session, client_id="c", request_seq=1)
    first = h.ok(close, SessionClosed)
    assert first.existed and h.apply(close) == first


def test_the_number_of_clients_remembered_is_bounded_least_recently_used_first() -> None:
    h = Harness(CoordLimits(max_dedupe_clients=2))
    h.create("/q/")
    a = h.ok(seq_create(1, client="a"), Created)
    h.ok(seq_create(1, client="b"), Created)
    assert h.apply(seq_create(1, client="a")) == a  # touches a: b is now the least recently used
    h.ok(seq_create(1, client="c"), Created)
    assert [r.client_id for r in h.sm.dedupe.clients.values()] == ["a", "c"]
    again = h.ok(seq_create(1, client="b"), Created)  # b was forgotten: its retry executes again
    assert again.stat.path == "/q/job-0000000003"


def test_writes_without_a_client_id_are_not_remembered() -> None:
    h = Harness()
    h.create("/a")
    assert isinstance(h.create("/a"), AlreadyExistsError)
    assert len(h.sm.dedupe) == 0


def test_a_write_made_without_the_session_is_still_remembered_after_the_session_ends() -> None:
    # Found by the model test: forgetting the whole client with its session let this create apply twice.
    h = Harness()
    h.create("/q/")
    session = h.session()
    h.ok(seq_create(1, client="c", session_id=session), Created)
    sessionless = h.ok(seq_create(2, client="c"), Created)
    h.ok(ExpireSessions(session_ids=(session,), epoch=0), SessionsExpired)
    assert list(h.sm.dedupe.clients[client_key(ALICE, "c")].results) == [2] and not h.sm.dedupe.by_session
    assert h.apply(seq_create(2, client="c")) == sessionless
    assert isinstance(h.apply(seq_create(1, client="c", session_id=session)), SessionExpiredError)
    assert h.sm.list("/q/").directory.children == 2


def test_another_principal_with_the_same_client_id_is_another_client() -> None:
    """A client id names a client within its principal: another principal reusing it (by mistake or on purpose)
    neither gets the first one's stored results nor disturbs them."""
    h = Harness()
    h.create("/q/")
    alices = h.ok(seq_create(1, client="shared"), Created)
    bobs = h.ok(seq_create(1, client="shared", principal=BOB), Created)
    assert bobs.stat.path != alices.stat.path and bobs.stat.creator == BOB
    assert h.apply(seq_create(1, client="shared")) == alices
    assert h.apply(seq_create(1, client="shared", principal=BOB)) == bobs


def test_a_sequence_number_reused_for_another_request_is_refused() -> None:
    """A retry repeats its request exactly; the same (client, request_seq) with another request is a client bug,
    refused instead of answered with the first request's result."""
    h = Harness()
    h.create("/q/")
    h.ok(seq_create(1, client="c"), Created)
    other = CreateNode(principal=ALICE, path="/q/other", client_id="c", request_seq=1)
    error = h.apply(other)
    assert isinstance(error, InvalidArgumentError) and "already used for a different request" in error.message
    assert h.sm.exists("/q/other").stat is None
