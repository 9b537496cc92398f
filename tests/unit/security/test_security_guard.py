"""The server-side Guard: refuses before the handler, logs every refusal, fails closed on stale revocations."""

from __future__ import annotations

import logging
import ssl
from dataclasses import dataclass

import pytest
from zk_fixtures import ALICE, AUTHORITY, BOB, NOW_NS, SECOND_NS, SERVICE, FakeClock, root

from feitian.errors import PermissionDeniedError, UnauthenticatedError, UnavailableError
from feitian.security import (
    ClusterAuthority,
    Guard,
    Principal,
    PrincipalKind,
    ReplayCache,
    RevocationList,
    RevocationView,
    Right,
    TlsIdentity,
    mint_token,
    requires,
    requires_authentication,
)


@dataclass
class Get:
    path: str


GET = requires(Right.READ, lambda req: f"coord:{req.path}")
PING = requires_authentication()
ALICE_P = Principal.from_public_key(ALICE.public_key, "alice", PrincipalKind.USER)
BOB_P = Principal.from_public_key(BOB.public_key, "bob", PrincipalKind.USER)


def make_guard(clock: FakeClock, revocations: RevocationList | None = None) -> Guard:
    view = RevocationView(max_staleness_ns=30 * SECOND_NS)
    view.update(revocations or RevocationList(), clock.monotonic_ns())
    return Guard(
        authority_key=AUTHORITY.public_key,
        audiences={SERVICE.principal_id, "coord"},
        revocations=view,
        replay_cache=ReplayCache(started_at_ns=clock.wall_ns() - SECOND_NS),
        clock=clock,
        logger=logging.getLogger("test.guard"),
    )


def test_capability_then_calls(caplog: pytest.LogCaptureFixture) -> None:
    clock = FakeClock()
    guard = make_guard(clock)
    conn = guard.open_connection(ALICE_P)
    guard.check(conn, PING, None, method="coord.Ping")
    with pytest.raises(UnauthenticatedError):
        guard.check(conn, GET, Get("/apps/web/a"), method="coord.Get")
    guard.present_capability(conn, root(ALICE, rights=("read",)).to_bytes())
    guard.check(conn, GET, Get("/apps/web/a"), method="coord.Get")
    with caplog.at_level(logging.WARNING, logger="test.guard"), pytest.raises(PermissionDeniedError):
        guard.check(conn, GET, Get("/etc"), method="coord.Get")
    assert len(caplog.records) == 2  # both refusals logged, once each
    record = caplog.records[-1]
    assert "coord.Get" in record.getMessage() and "alice" in record.getMessage()
    assert "reason=not_granted" in record.getMessage()
    assert guard.refusals == {"missing": 1, "not_granted": 1}


def test_stolen_capability_is_useless_on_another_connection() -> None:
    guard = make_guard(FakeClock())
    conn = guard.open_connection(BOB_P)
    with pytest.raises(PermissionDeniedError) as info:
        guard.present_capability(conn, root(ALICE).to_bytes())
    assert info.value.fields["reason"] == "wrong_holder"


def test_token_presented_once() -> None:
    clock = FakeClock()
    guard = make_guard(clock)
    token = mint_token(
        ALICE,
        root(ALICE, resources=("coord:/",), rights=("read",)),
        audience="coord",
        resources=["coord:/jobs/7"],
        rights=["read"],
        now_ns=NOW_NS,
        nonce=b"t" * 16,
    ).to_bytes()
    conn = guard.open_connection(BOB_P)
    guard.present_token(conn, token)
    guard.check(conn, GET, Get("/jobs/7/status"))
    with pytest.raises(UnauthenticatedError) as info:
        guard.present_token(guard.open_connection(BOB_P), token)
    assert info.value.fields["reason"] == "replayed"


def test_revoked_peer_is_refused_at_connection_and_on_every_call() -> None:
    clock = FakeClock()
    guard = make_guard(clock, RevocationList().revoke_holder(BOB.principal_id))
    with pytest.raises(UnauthenticatedError) as info:
        guard.open_connection(BOB_P)
    assert info.value.fields["reason"] == "revoked_holder"
    guard = make_guard(clock)
    conn = guard.open_connection(BOB_P)
    guard.revocations.update(RevocationList().revoke_holder(BOB.principal_id), clock.monotonic_ns())
    with pytest.raises(UnauthenticatedError):
        guard.check(conn, PING, None)


def test_stale_revocations_fail_closed() -> None:
    clock = FakeClock()
    guard = make_guard(clock)
    conn = guard.open_connection(ALICE_P)
    guard.present_capability(conn, root(ALICE, rights=("read",)).to_bytes())
    clock.advance(31 * SECOND_NS)
    with pytest.raises(UnavailableError) as info:
        guard.check(conn, GET, Get("/apps/web/a"))
    assert info.value.fields["reason"] == "revocations_stale"
    guard.revocations.update(RevocationList(), clock.monotonic_ns())
    guard.check(conn, GET, Get("/apps/web/a"))


def test_open_connection_from_a_certificate() -> None:
    ca = ClusterAuthority.create(AUTHORITY, cluster_name="t", now_s=NOW_NS / 1e9)
    identity = TlsIdentity.issue(ca, ALICE, PrincipalKind.USER, now_s=NOW_NS / 1e9)
    guard = make_guard(FakeClock())
    conn = guard.open_connection(ssl.PEM_cert_to_DER_cert(identity.certificate_pem.decode()))
    assert conn.principal == ALICE_P
    with pytest.raises(UnauthenticatedError):
        guard.open_connection(b"garbage")
