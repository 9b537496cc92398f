"""The per-connection authorizer and method rules: refused before the handler, cached, invalidated."""

from __future__ import annotations

from dataclasses import dataclass

import pytest
from zk_fixtures import ALICE, AUTHORITY, BOB, NO_REVOCATIONS, NOW_NS, SECOND_NS, assert_refused, root

from feitian.errors import InvalidArgumentError, PermissionDeniedError, UnauthenticatedError
from feitian.security import (
    Authorizer,
    Grant,
    Principal,
    PrincipalKind,
    Reason,
    Right,
    requires,
    requires_authentication,
    requires_each,
    revocation_deadline,
    verify_chain,
)

U, P = UnauthenticatedError, PermissionDeniedError
ALICE_P = Principal.from_public_key(ALICE.public_key, "alice", PrincipalKind.USER)


@dataclass
class GetRequest:
    path: str


GET = requires(Right.READ, lambda req: f"coord:{req.path}")
SET = requires("write", lambda req: f"coord:{req.path}")


def grant_for(holder=ALICE, ttl_ns: int = 60 * SECOND_NS, **kwargs: object) -> Grant:
    chain = root(holder, ttl_ns=ttl_ns, **kwargs)  # type: ignore[arg-type]
    return verify_chain(chain, authority_key=AUTHORITY.public_key, now_ns=NOW_NS, revocations=NO_REVOCATIONS)


def authorizer_with(*grants: Grant) -> Authorizer:
    authorizer = Authorizer(ALICE_P)
    for g in grants:
        authorizer.add_grant(g, now_ns=NOW_NS)
    return authorizer


def test_allowed_call_passes_and_is_cached() -> None:
    authorizer = authorizer_with(grant_for(rights=("read",)))
    for _ in range(3):
        authorizer.check_call(GET, GetRequest("/apps/web/x"), now_ns=NOW_NS, revocations=NO_REVOCATIONS)
    assert (authorizer.misses, authorizer.hits) == (1, 2)


def test_denial_names_principal_right_and_resource() -> None:
    authorizer = authorizer_with(grant_for(rights=("read",)))
    with pytest.raises(P) as info:
        authorizer.check_call(SET, GetRequest("/apps/web/x"), now_ns=NOW_NS, revocations=NO_REVOCATIONS)
    assert_refused(info, Reason.NOT_GRANTED, P)
    exc = info.value
    assert exc.fields["principal_id"] == ALICE.principal_id
    assert (exc.fields["right"], exc.fields["resource"]) == ("write", "coord:/apps/web/x")
    assert "alice" in exc.message and "write" in exc.message and "coord:/apps/web/x" in exc.message
    with pytest.raises(P):  # a cached denial still raises
        authorizer.check_call(SET, GetRequest("/apps/web/x"), now_ns=NOW_NS, revocations=NO_REVOCATIONS)
    with pytest.raises(P):
        authorizer.check_call(GET, GetRequest("/apps/webx"), now_ns=NOW_NS, revocations=NO_REVOCATIONS)


@dataclass
class Many:
    reads: tuple[GetRequest, ...]
    writes: tuple[GetRequest, ...]


EACH = requires_each(lambda req: [(GET, r) for r in req.reads] + [(SET, w) for w in req.writes])


def test_a_rule_over_several_requests_needs_what_each_of_them_needs() -> None:
    authorizer = authorizer_with(grant_for(rights=("read", "write"), resources=("coord:/apps/web",)))
    inside = Many(reads=(GetRequest("/apps/web/a"),), writes=(GetRequest("/apps/web/b"), GetRequest("/apps/web/c")))
    authorizer.check_call(EACH, inside, now_ns=NOW_NS, revocations=NO_REVOCATIONS)
    one_outside = Many(reads=(GetRequest("/apps/web/a"),), writes=(GetRequest("/apps/web/b"), GetRequest("/etc/x")))
    with pytest.raises(P) as info:
        authorizer.check_call(EACH, one_outside, now_ns=NOW_NS, revocations=NO_REVOCATIONS)
    assert info.value.fields["resource"] == "coord:/etc/x"
    read_only = authorizer_with(grant_for(rights=("read",), resources=("coord:/apps/web",)))
    with pytest.raises(P):  # the right of each inner rule counts, not only its resource
        read_only.check_call(EACH, inside, now_ns=NOW_NS, revocations=NO_REVOCATIONS)
    read_only.check_call(EACH, Many(reads=inside.reads, writes=()), now_ns=NOW_NS, revocations=NO_REVOCATIONS)


def test_no_capability_at_all_is_missing() -> None:
    with pytest.raises(U) as info:
        Authorizer(ALICE_P).check(Right.READ, "coord:/x", now_ns=NOW_NS, revocations=NO_REVOCATIONS)
    assert_refused(info, Reason.MISSING, U)


def test_presented_by_a_principal_that_is_not_the_holder() -> None:
    with pytest.raises(P) as info:
        Authorizer(ALICE_P).add_grant(grant_for(BOB), now_ns=NOW_NS)
    assert_refused(info, Reason.WRONG_HOLDER, P)


def test_expiry_ends_a_cached_decision() -> None:
    authorizer = authorizer_with(grant_for(ttl_ns=10 * SECOND_NS))
    authorizer.check(Right.READ, "coord:/apps/web/a", now_ns=NOW_NS, revocations=NO_REVOCATIONS)
    with pytest.raises(U) as info:
        authorizer.check(Right.READ, "coord:/apps/web/a", now_ns=NOW_NS + 10 * SECOND_NS, revocations=NO_REVOCATIONS)
    assert_refused(info, Reason.EXPIRED, U)
    assert authorizer.grants == ()
    with pytest.raises(U):
        authorizer.add_grant(grant_for(ttl_ns=SECOND_NS), now_ns=NOW_NS + SECOND_NS)


def test_revocation_change_invalidates_cached_allows() -> None:
    grant = grant_for()
    authorizer = authorizer_with(grant)
    authorizer.check(Right.READ, "coord:/apps/web/a", now_ns=NOW_NS, revocations=NO_REVOCATIONS)
    by_id = NO_REVOCATIONS.revoke_id(grant.capability_ids[0], until_ns=revocation_deadline(NOW_NS))
    with pytest.raises(U) as info:
        authorizer.check(Right.READ, "coord:/apps/web/a", now_ns=NOW_NS, revocations=by_id)
    assert_refused(info, Reason.REVOKED_ID, U)

    authorizer = authorizer_with(grant_for())
    authorizer.check(Right.READ, "coord:/apps/web/a", now_ns=NOW_NS, revocations=NO_REVOCATIONS)
    with pytest.raises(U) as info:
        authorizer.check(
            Right.READ, "coord:/apps/web/a", now_ns=NOW_NS, revocations=NO_REVOCATIONS.revoke_holder(ALICE.principal_id)
        )
    assert_refused(info, Reason.REVOKED_HOLDER, U)


def test_unrelated_revocation_keeps_grants() -> None:
    authorizer = authorizer_with(grant_for())
    other = NO_REVOCATIONS.revoke_holder(BOB.principal_id)
    authorizer.check(Right.READ, "coord:/apps/web/a", now_ns=NOW_NS, revocations=other)
    authorizer.check(Right.READ, "coord:/apps/web/a", now_ns=NOW_NS, revocations=other)
    assert authorizer.hits == 1 and len(authorizer.grants) == 1


def test_new_grant_clears_cached_denials() -> None:
    authorizer = authorizer_with(grant_for(rights=("read",)))
    with pytest.raises(P):
        authorizer.check(Right.WRITE, "coord:/apps/web/a", now_ns=NOW_NS, revocations=NO_REVOCATIONS)
    authorizer.add_grant(grant_for(rights=("write",)), now_ns=NOW_NS)
    authorizer.check(Right.WRITE, "coord:/apps/web/a", now_ns=NOW_NS, revocations=NO_REVOCATIONS)


def test_bounds() -> None:
    authorizer = Authorizer(ALICE_P, max_decisions=4, max_grants=2)
    short, long_ = grant_for(ttl_ns=10 * SECOND_NS), grant_for(ttl_ns=100 * SECOND_NS)
    for g in (short, long_, grant_for(ttl_ns=50 * SECOND_NS)):
        authorizer.add_grant(g, now_ns=NOW_NS)
    assert short not in authorizer.grants and len(authorizer.grants) == 2  # the soonest-expiring one went
    for i in range(10):
        authorizer.check(Right.READ, f"coord:/apps/web/{i}", now_ns=NOW_NS, revocations=NO_REVOCATIONS)
    assert len(authorizer._decisions) <= 4


def test_rules() -> None:
    assert requires_authentication().right is None
    fixed = requires("admin", "job:*")
    assert fixed.resource_for(object()) == "job:*"
    with pytest.raises(InvalidArgumentError):
        requires("read", "job:/a/../b")
    with pytest.raises(ValueError):
        requires("fly", "job:*")
    authorizer = authorizer_with(grant_for())
    authorizer.check_call(requires_authentication(), None, now_ns=NOW_NS, revocations=NO_REVOCATIONS)
    with pytest.raises(InvalidArgumentError):  # a request whose path tries to escape is refused as invalid
        authorizer.check_call(GET, GetRequest("/apps/web/../../etc"), now_ns=NOW_NS, revocations=NO_REVOCATIONS)


def test_grant_verified_with_an_older_list_is_rechecked() -> None:
    grant = grant_for()
    newer = NO_REVOCATIONS.revoke_id(grant.capability_ids[0], until_ns=revocation_deadline(NOW_NS))
    authorizer = Authorizer(ALICE_P)
    with pytest.raises(U):
        authorizer.check(Right.READ, "coord:/apps/web/a", now_ns=NOW_NS, revocations=newer)
    authorizer.add_grant(grant, now_ns=NOW_NS)  # verified earlier, against NO_REVOCATIONS
    with pytest.raises(U) as info:
        authorizer.check(Right.READ, "coord:/apps/web/a", now_ns=NOW_NS, revocations=newer)
    assert_refused(info, Reason.REVOKED_ID, U)


def test_grant_from_an_authority_slightly_ahead_is_usable_at_once() -> None:
    chain = root(now_ns=NOW_NS + 2 * SECOND_NS)  # the authority's clock is 2 s ahead of ours
    grant = verify_chain(chain, authority_key=AUTHORITY.public_key, now_ns=NOW_NS, revocations=NO_REVOCATIONS)
    authorizer_with(grant).check(Right.READ, "coord:/apps/web/a", now_ns=NOW_NS, revocations=NO_REVOCATIONS)
