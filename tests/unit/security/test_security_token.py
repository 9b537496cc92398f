"""Tokens: mint at call time, verify once, one distinct reason per kind of bad token; the replay cache bound."""

from __future__ import annotations

import msgspec
import pytest
from zk_fixtures import (
    ALICE,
    AUTHORITY,
    BOB,
    CAROL,
    MALLORY,
    NO_REVOCATIONS,
    NOW_NS,
    SECOND_NS,
    SERVICE,
    assert_refused,
    root,
)

from feitian.errors import InvalidArgumentError, OverloadedError, PermissionDeniedError, UnauthenticatedError
from feitian.security import (
    CapabilityChain,
    Grant,
    Reason,
    ReplayCache,
    RevocationList,
    Right,
    Token,
    TokenBody,
    mint_token,
    parse_resource,
    verify_token,
)
from feitian.security.core.token import _SIGNING_DOMAIN, MAX_TOKEN_TTL_NS

U, P = UnauthenticatedError, PermissionDeniedError
AUDIENCE = SERVICE.principal_id


def master_chain() -> CapabilityChain:
    return root(ALICE, resources=("dfs:/data",), rights=("read", "write"))


def mint(nonce: bytes = b"n" * 16, **kwargs: object) -> Token:
    values: dict[str, object] = {
        "audience": AUDIENCE,
        "resources": ["dfs:/data/logs/chunk-1"],
        "rights": ["read"],
        "now_ns": NOW_NS,
        "nonce": nonce,
        "ttl_ns": 30 * SECOND_NS,
    }
    values.update(kwargs)
    return mint_token(ALICE, master_chain(), **values)  # type: ignore[arg-type]


def fresh_cache() -> ReplayCache:
    return ReplayCache(started_at_ns=NOW_NS - 3600 * SECOND_NS)


def verify(
    token: Token | bytes,
    *,
    presenter: bytes = BOB.public_key,
    now_ns: int = NOW_NS + SECOND_NS,
    cache: ReplayCache | None = None,
    revocations: RevocationList = NO_REVOCATIONS,
) -> Grant:
    return verify_token(
        token,
        audiences={AUDIENCE, "dfs-chunk"},
        presenter_key=presenter,
        authority_key=AUTHORITY.public_key,
        now_ns=now_ns,
        revocations=revocations,
        replay_cache=fresh_cache() if cache is None else cache,
    )


def resign(token: Token, signer=ALICE, **fields: object) -> Token:
    """Change body fields and sign again (a minter misbehaving on purpose)."""
    body = msgspec.structs.replace(token.open(), **fields)
    encoded = msgspec.msgpack.encode(body)
    return Token(body=encoded, signature=signer.sign(_SIGNING_DOMAIN + encoded), issuer_chain=token.issuer_chain)


def test_mint_and_verify() -> None:
    grant = verify(mint().to_bytes())
    assert grant.source == "token"
    assert grant.holder_key == BOB.public_key  # a bearer token is held by whoever presents it
    assert grant.rights == {Right.READ}
    assert grant.allows(Right.READ, parse_resource("dfs:/data/logs/chunk-1"))
    assert not grant.allows(Right.READ, parse_resource("dfs:/data/logs/chunk-2"))
    assert grant.expires_ns == NOW_NS + 30 * SECOND_NS
    assert ALICE.principal_id in grant.principal_ids


def test_expiry_is_clipped_to_the_chain() -> None:
    chain = root(ALICE, resources=("dfs:/data",), rights=("read",), ttl_ns=10 * SECOND_NS)
    token = mint_token(
        ALICE, chain, audience=AUDIENCE, resources=["dfs:/data"], rights=["read"], now_ns=NOW_NS, nonce=b"x" * 16
    )
    assert token.open().expires_ns == NOW_NS + 10 * SECOND_NS


@pytest.mark.parametrize(
    ("kwargs", "problem"),
    [
        ({"resources": ["dfs:/other"]}, "not within"),
        ({"rights": ["delete"]}, "not within"),
        ({"ttl_ns": MAX_TOKEN_TTL_NS + 1}, "ttl"),
        ({"nonce": b"short"}, "nonce"),
        ({"audience": ""}, "audience"),
        ({"holder_key": b"xx"}, "holder_key"),
    ],
)
def test_mint_refuses_bad_requests(kwargs: dict[str, object], problem: str) -> None:
    with pytest.raises(InvalidArgumentError, match=problem):
        mint(**kwargs)


def test_mint_requires_the_chain_holder() -> None:
    with pytest.raises(InvalidArgumentError, match="does not hold"):
        mint_token(
            MALLORY,
            master_chain(),
            audience=AUDIENCE,
            resources=["dfs:/data"],
            rights=["read"],
            now_ns=NOW_NS,
            nonce=b"n" * 16,
        )


# --- one reason per kind of bad token ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("data", "reason"),
    [(b"", Reason.MISSING), (b"\x94\xa5token", Reason.TRUNCATED), (b"\xc1garbage", Reason.MALFORMED)],
)
def test_undecodable(data: bytes, reason: Reason) -> None:
    with pytest.raises(U) as info:
        verify(data)
    assert_refused(info, reason, U)


def test_truncated_valid_token() -> None:
    data = mint().to_bytes()
    with pytest.raises(U) as info:
        verify(data[:-7])
    assert_refused(info, Reason.TRUNCATED, U)


def test_forged_signature() -> None:
    token = mint()
    forged = msgspec.structs.replace(token, signature=MALLORY.sign(_SIGNING_DOMAIN + token.body))
    with pytest.raises(U) as info:
        verify(forged)
    assert_refused(info, Reason.BAD_SIGNATURE, U)


def test_widened_scope_re_signed_by_a_forger() -> None:
    # Mallory signs a token claiming to be from Alice: the signature check uses Alice's key.
    with pytest.raises(U) as info:
        verify(resign(mint(), signer=MALLORY, rights=(Right.ADMIN,)))
    assert_refused(info, Reason.BAD_SIGNATURE, U)


def test_expired_and_not_yet_valid() -> None:
    token = mint()
    with pytest.raises(U) as info:
        verify(token, now_ns=NOW_NS + 30 * SECOND_NS)
    assert_refused(info, Reason.EXPIRED, U)
    with pytest.raises(U) as info:
        verify(token, now_ns=NOW_NS - 10 * SECOND_NS)
    assert_refused(info, Reason.NOT_YET_VALID, U)


def test_lifetime_over_the_hard_maximum() -> None:
    token = resign(mint(), expires_ns=NOW_NS + MAX_TOKEN_TTL_NS + SECOND_NS)
    with pytest.raises(U) as info:
        verify(token)
    assert_refused(info, Reason.MALFORMED, U)


def test_wrong_audience() -> None:
    with pytest.raises(U) as info:
        verify(mint(audience="some-other-chunkserver"))
    assert_refused(info, Reason.WRONG_AUDIENCE, U)


def test_replayed_on_the_same_or_another_connection() -> None:
    cache = fresh_cache()
    token = mint().to_bytes()
    verify(token, cache=cache)
    for presenter in (BOB, CAROL):
        with pytest.raises(U) as info:
            verify(token, cache=cache, presenter=presenter.public_key, now_ns=NOW_NS + 2 * SECOND_NS)
        assert_refused(info, Reason.REPLAYED, U)
    verify(mint(nonce=b"m" * 16), cache=cache)  # another nonce is another token


def test_issued_before_the_receiver_started() -> None:
    cache = ReplayCache(started_at_ns=NOW_NS + SECOND_NS // 2)
    with pytest.raises(U) as info:
        verify(mint(), cache=cache)
    assert_refused(info, Reason.ISSUED_BEFORE_START, U)


def test_scope_wider_than_the_issuer_chain() -> None:
    for fields in ({"resources": ("dfs:/",)}, {"rights": (Right.DELETE,)}):
        with pytest.raises(P) as info:
            verify(resign(mint(), **fields))
        assert_refused(info, Reason.WIDENED_DELEGATION, P)


def test_chain_held_by_someone_else() -> None:
    token = mint()
    stolen = Token(body=token.body, signature=token.signature, issuer_chain=root(BOB, resources=("dfs:/data",)))
    with pytest.raises(U) as info:
        verify(stolen)
    assert_refused(info, Reason.BROKEN_CHAIN, U)


def test_bound_token_presented_by_another_principal() -> None:
    token = mint(holder_key=BOB.public_key)
    with pytest.raises(P) as info:
        verify(token, presenter=MALLORY.public_key)
    assert_refused(info, Reason.WRONG_HOLDER, P)
    assert verify(token, presenter=BOB.public_key).holder_key == BOB.public_key


def test_revoked_minter_chain_and_presenter() -> None:
    token = mint()
    cases = [
        (NO_REVOCATIONS.revoke_id(token.issuer_chain.leaf.id, until_ns=NOW_NS + 3600 * SECOND_NS), Reason.REVOKED_ID),
        (NO_REVOCATIONS.revoke_holder(ALICE.principal_id), Reason.REVOKED_HOLDER),
        (NO_REVOCATIONS.revoke_holder(BOB.principal_id), Reason.REVOKED_HOLDER),
    ]
    for revocations, reason in cases:
        with pytest.raises(U) as info:
            verify(token, revocations=revocations)
        assert_refused(info, reason, U)


def test_refused_tokens_do_not_use_replay_memory() -> None:
    cache = fresh_cache()
    with pytest.raises(U):
        verify(mint(audience="elsewhere"), cache=cache)
    assert len(cache) == 0


# --- the replay cache ------------------------------------------------------------------------------------------


def test_full_cache_refuses_instead_of_forgetting() -> None:
    cache = ReplayCache(started_at_ns=0, max_entries=2)
    cache.check_and_remember(b"a", issued_at_ns=1, expires_ns=100, now_ns=10)
    cache.check_and_remember(b"b", issued_at_ns=1, expires_ns=200, now_ns=10)
    with pytest.raises(OverloadedError) as info:
        cache.check_and_remember(b"c", issued_at_ns=1, expires_ns=300, now_ns=10)
    assert info.value.fields["reason"] == "replay_cache_full"
    with pytest.raises(U) as u_info:
        cache.check_and_remember(b"a", issued_at_ns=1, expires_ns=100, now_ns=10)  # still remembered
    assert_refused(u_info, Reason.REPLAYED, U)
    cache.check_and_remember(b"c", issued_at_ns=1, expires_ns=300, now_ns=100)  # "a" expired: room again
    assert len(cache) == 2


def test_cache_forgets_only_expired_nonces() -> None:
    cache = ReplayCache(started_at_ns=0, max_entries=10)
    for i in range(5):
        cache.check_and_remember(bytes([i]), issued_at_ns=0, expires_ns=100 + i, now_ns=0)
    cache.prune(102)
    assert len(cache) == 2


def test_token_body_round_trip() -> None:
    token = mint()
    assert Token.from_bytes(token.to_bytes()) == token
    assert isinstance(token.open(), TokenBody)
