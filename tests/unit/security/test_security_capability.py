"""Capability chains: issue, delegate, verify; one distinct reason per kind of bad chain; attenuation."""

from __future__ import annotations

import msgspec
import pytest
from zk_fixtures import ALICE, AUTHORITY, BOB, CAROL, MALLORY, NO_REVOCATIONS, NOW_NS, SECOND_NS, assert_refused, root

from feitian.errors import FeitianError, InvalidArgumentError, PermissionDeniedError, UnauthenticatedError
from feitian.security import (
    CapabilityChain,
    Reason,
    Right,
    SignedCapability,
    capability_id,
    delegate,
    new_capability,
    parse_resource,
    revocation_deadline,
    sign_capability,
    verify_chain,
)
from feitian.security.core.capability import MAX_CHAIN_LENGTH

U, P = UnauthenticatedError, PermissionDeniedError


def verify(chain: CapabilityChain | bytes, *, now_ns: int = NOW_NS, revocations=NO_REVOCATIONS):
    if isinstance(chain, bytes):
        chain = CapabilityChain.from_bytes(chain)
    return verify_chain(chain, authority_key=AUTHORITY.public_key, now_ns=now_ns, revocations=revocations)


def alice_to_bob(**kwargs: object) -> CapabilityChain:
    return delegate(root(), ALICE, holder_key=BOB.public_key, holder_name="bob", now_ns=NOW_NS, **kwargs)  # type: ignore[arg-type]


def forge_link(
    parent: CapabilityChain,
    issuer=BOB,
    holder=CAROL,
    parent_id: bytes | None = None,
    **fields: object,
) -> CapabilityChain:
    """Sign a link with no attenuation checks (what a malicious delegator can do)."""
    leaf = parent.leaf
    values: dict[str, object] = {
        "issuer_key": issuer.public_key,
        "holder_key": holder.public_key,
        "holder_name": holder.name,
        "resources": leaf.resources,
        "rights": leaf.rights,
        "not_before_ns": NOW_NS,
        "expires_ns": leaf.expires_ns,
        "max_depth": max(leaf.max_depth - 1, 0),
        "parent_id": leaf.id if parent_id is None else parent_id,
    }
    values.update(fields)
    cap = new_capability(**values)  # type: ignore[arg-type]
    return CapabilityChain(links=(*parent.links, sign_capability(cap, issuer)))


def test_root_capability_verifies_to_its_grant() -> None:
    chain = root(resources=("coord:/apps/web/", "dfs:/data/logs"), rights=("read", "write"))
    grant = verify(chain.to_bytes())
    assert grant.holder_key == ALICE.public_key and grant.holder_id == ALICE.principal_id
    assert grant.rights == {Right.READ, Right.WRITE}
    assert [str(r) for r in grant.resources] == ["coord:/apps/web", "dfs:/data/logs"]
    assert grant.expires_ns == NOW_NS + 3600 * SECOND_NS
    assert grant.capability_ids == (chain.leaf.id,)
    assert grant.allows(Right.READ, parse_resource("coord:/apps/web/x"))
    assert not grant.allows(Right.READ, parse_resource("coord:/apps/webx"))
    assert not grant.allows(Right.DELETE, parse_resource("coord:/apps/web/x"))


def test_delegation_narrows_and_verifies() -> None:
    chain = delegate(
        alice_to_bob(resources=["coord:/apps/web/bob"], rights=["read"]),
        BOB,
        holder_key=CAROL.public_key,
        holder_name="carol",
        now_ns=NOW_NS,
        expires_ns=NOW_NS + 60 * SECOND_NS,
    )
    grant = verify(chain)
    assert grant.holder_key == CAROL.public_key
    assert [str(r) for r in grant.resources] == ["coord:/apps/web/bob"]
    assert grant.rights == {Right.READ}
    assert grant.expires_ns == NOW_NS + 60 * SECOND_NS
    assert grant.principal_ids == (ALICE.principal_id, BOB.principal_id, CAROL.principal_id)
    assert len(grant.capability_ids) == 3


def test_admin_may_delegate_any_single_right() -> None:
    chain = delegate(
        root(rights=("admin",)), ALICE, holder_key=BOB.public_key, holder_name="bob", now_ns=NOW_NS, rights=["delete"]
    )
    assert verify(chain).rights == {Right.DELETE}


@pytest.mark.parametrize(
    "widening",
    [
        {"resources": ["coord:/apps"]},
        {"resources": ["coord:/apps/webx"]},
        {"rights": ["read", "delete"]},
        {"rights": ["admin"]},
        {"expires_ns": NOW_NS + 7200 * SECOND_NS},
        {"max_depth": 2},
    ],
)
def test_delegate_refuses_to_widen(widening: dict[str, object]) -> None:
    with pytest.raises(InvalidArgumentError, match="widen"):
        alice_to_bob(**widening)


def test_delegate_requires_the_holder_and_depth() -> None:
    with pytest.raises(InvalidArgumentError, match="holder"):
        delegate(root(), MALLORY, holder_key=BOB.public_key, holder_name="bob", now_ns=NOW_NS)
    with pytest.raises(InvalidArgumentError, match="further"):
        delegate(root(max_depth=0), ALICE, holder_key=BOB.public_key, holder_name="bob", now_ns=NOW_NS)


def test_id_is_derived_from_contents() -> None:
    cap = root().leaf
    assert cap.id == capability_id(cap) and len(cap.id) == 16
    assert capability_id(msgspec.structs.replace(cap, rights=(Right.READ,))) != cap.id


# --- every kind of bad chain gets its own reason -------------------------------------------------------------


def _resigned(chain: CapabilityChain, signer=AUTHORITY, **fields: object) -> CapabilityChain:
    """The root re-signed by ``signer`` after changing ``fields`` (id recomputed)."""
    cap = msgspec.structs.replace(chain.leaf, **fields)
    cap = msgspec.structs.replace(cap, id=capability_id(cap))
    return CapabilityChain(links=(sign_capability(cap, signer),))


def _flip(data: bytes, index: int) -> bytes:
    return data[:index] + bytes([data[index] ^ 0x01]) + data[index + 1 :]


def test_missing() -> None:
    with pytest.raises(U) as info:
        verify(b"")
    assert_refused(info, Reason.MISSING, U)
    with pytest.raises(U) as info:
        verify(CapabilityChain(links=()))
    assert_refused(info, Reason.MISSING, U)


def test_truncated() -> None:
    data = root().to_bytes()
    with pytest.raises(U) as info:
        verify(data[: len(data) // 2])
    assert_refused(info, Reason.TRUNCATED, U)


def test_malformed() -> None:
    with pytest.raises(U) as info:
        verify(b"\x93\xa5hello\x01\x02")
    assert_refused(info, Reason.MALFORMED, U)


def test_forged_signature() -> None:
    chain = root()
    link = chain.links[0]
    forged = CapabilityChain(links=(SignedCapability(body=link.body, signature=_flip(link.signature, 5)),))
    with pytest.raises(U) as info:
        verify(forged)
    assert_refused(info, Reason.BAD_SIGNATURE, U)


def test_altered_body_keeps_old_signature() -> None:
    chain = root(rights=("read",))
    cap = msgspec.structs.replace(chain.leaf, rights=(Right.READ, Right.ADMIN))
    cap = msgspec.structs.replace(cap, id=capability_id(cap))
    altered = SignedCapability(body=msgspec.msgpack.encode(cap), signature=chain.links[0].signature)
    with pytest.raises(U) as info:
        verify(CapabilityChain(links=(altered,)))
    assert_refused(info, Reason.BAD_SIGNATURE, U)


def test_root_not_from_the_authority() -> None:
    with pytest.raises(U) as info:
        verify(root(authority=MALLORY))
    assert_refused(info, Reason.UNTRUSTED_ISSUER, U)


def test_link_not_issued_by_previous_holder() -> None:
    with pytest.raises(U) as info:
        verify(forge_link(alice_to_bob(), issuer=MALLORY))
    assert_refused(info, Reason.BROKEN_CHAIN, U)


def test_link_naming_another_parent() -> None:
    with pytest.raises(U) as info:
        verify(forge_link(alice_to_bob(), parent_id=b"\x07" * 16))
    assert_refused(info, Reason.BROKEN_CHAIN, U)


def test_leaf_presented_without_its_parents() -> None:
    chain = alice_to_bob()
    with pytest.raises(U) as info:
        verify(CapabilityChain(links=chain.links[1:]))
    assert_refused(info, Reason.UNTRUSTED_ISSUER, U)


def test_not_yet_valid_and_expired() -> None:
    chain = root(now_ns=NOW_NS, ttl_ns=60 * SECOND_NS)
    with pytest.raises(U) as info:
        verify(chain, now_ns=NOW_NS - 60 * SECOND_NS)
    assert_refused(info, Reason.NOT_YET_VALID, U)
    verify(chain, now_ns=NOW_NS - 4 * SECOND_NS)  # within the clock skew allowance
    verify(chain, now_ns=NOW_NS + 59 * SECOND_NS)
    with pytest.raises(U) as info:
        verify(chain, now_ns=NOW_NS + 60 * SECOND_NS)
    assert_refused(info, Reason.EXPIRED, U)


def test_revoked_by_id_anywhere_in_the_chain() -> None:
    chain = alice_to_bob()
    for link in chain.links:
        revocations = NO_REVOCATIONS.revoke_id(link.open().id, until_ns=revocation_deadline(NOW_NS))
        with pytest.raises(U) as info:
            verify(chain, revocations=revocations)
        assert_refused(info, Reason.REVOKED_ID, U)


def test_revoked_by_holder_anywhere_in_the_chain() -> None:
    chain = alice_to_bob()
    for holder in (ALICE, BOB):
        with pytest.raises(U) as info:
            verify(chain, revocations=NO_REVOCATIONS.revoke_holder(holder.principal_id))
        assert_refused(info, Reason.REVOKED_HOLDER, U)
    verify(chain, revocations=NO_REVOCATIONS.revoke_holder(CAROL.principal_id))


@pytest.mark.parametrize(
    "fields",
    [
        {"resources": ("coord:/apps",)},
        {"resources": ("coord:/apps/web", "dfs:/")},
        {"rights": (Right.READ, Right.DELETE)},
        {"rights": (Right.ADMIN,)},
        {"expires_ns": NOW_NS + 7200 * SECOND_NS},
        {"max_depth": 2},
    ],
)
def test_widened_delegation(fields: dict[str, object]) -> None:
    with pytest.raises(P) as info:
        verify(forge_link(root(), issuer=ALICE, holder=BOB, **fields))
    assert_refused(info, Reason.WIDENED_DELEGATION, P)


def test_delegation_past_depth_zero_is_widening() -> None:
    with pytest.raises(P) as info:
        verify(forge_link(root(max_depth=0), issuer=ALICE, holder=BOB, max_depth=0))
    assert_refused(info, Reason.WIDENED_DELEGATION, P)


def test_root_lifetime_over_the_maximum_is_malformed() -> None:
    chain = _resigned(root(), expires_ns=NOW_NS + 25 * 3600 * SECOND_NS)
    with pytest.raises(U) as info:
        verify(chain)
    assert_refused(info, Reason.MALFORMED, U)


def test_wrong_id_is_malformed() -> None:
    cap = msgspec.structs.replace(root().leaf, id=b"\x00" * 16)
    with pytest.raises(U) as info:
        verify(CapabilityChain(links=(sign_capability(cap, AUTHORITY),)))
    assert_refused(info, Reason.MALFORMED, U)


def test_unparsable_resource_inside_a_signed_link_is_malformed() -> None:
    cap = msgspec.structs.replace(root().leaf, resources=("coord:/a/../b",))
    cap = msgspec.structs.replace(cap, id=capability_id(cap))
    with pytest.raises(U) as info:
        verify(CapabilityChain(links=(sign_capability(cap, AUTHORITY),)))
    assert_refused(info, Reason.MALFORMED, U)


def test_chain_length_is_bounded() -> None:
    chain = root(max_depth=7)
    holders = [BOB, CAROL]
    signer = ALICE
    for i in range(MAX_CHAIN_LENGTH - 1):
        nxt = holders[i % 2]
        chain = delegate(chain, signer, holder_key=nxt.public_key, holder_name=nxt.name, now_ns=NOW_NS)
        signer = nxt
    verify(chain)
    with pytest.raises(InvalidArgumentError):
        delegate(chain, signer, holder_key=ALICE.public_key, holder_name="alice", now_ns=NOW_NS)
    too_long = CapabilityChain(links=(*chain.links, chain.links[-1]))
    with pytest.raises(FeitianError) as info:
        verify(msgspec.msgpack.encode(too_long))
    assert_refused(info, Reason.MALFORMED, U)


def test_new_capability_lists_problems() -> None:
    with pytest.raises(InvalidArgumentError) as info:
        new_capability(
            issuer_key=AUTHORITY.public_key,
            holder_key=b"short",
            holder_name="alice",
            resources=["coord:/x"],
            rights=[],
            not_before_ns=10,
            expires_ns=5,
            max_depth=99,
        )
    assert len(info.value.fields["problems"]) == 4
