"""The authority's policy: grants, revocations, issuing inside the policy only, persistence."""

from __future__ import annotations

import pytest
from zk_fixtures import ALICE, AUTHORITY, BOB, CAROL, NO_REVOCATIONS, NOW_NS, assert_refused

from feitian.errors import DataCorruptionError, NotFoundError, PermissionDeniedError
from feitian.security import CapabilityChain, Policy, Reason, Right, sign_capability, verify_chain


def policy() -> Policy:
    p = Policy()
    p.grant(ALICE.principal_id, "alice", ["coord:/apps/web/", "dfs:/data"], ["read", "write"])
    p.grant(BOB.principal_id, "bob", ["*"], ["admin"], max_depth=3)
    return p


def issue(p: Policy, holder=ALICE, **kwargs: object):
    values: dict[str, object] = {"resources": ["coord:/apps/web/x"], "rights": ["read"]}
    values.update(kwargs)
    return p.issue(
        holder_key=holder.public_key,
        holder_name=holder.name,
        now_ns=NOW_NS,
        authority_key=AUTHORITY.public_key,
        **values,  # type: ignore[arg-type]
    )


def test_issue_inside_the_policy_verifies() -> None:
    cap = issue(policy(), resources=["coord:/apps/web/x", "dfs:/data/y"], rights=["read", "write"])
    chain = CapabilityChain(links=(sign_capability(cap, AUTHORITY),))
    grant = verify_chain(chain, authority_key=AUTHORITY.public_key, now_ns=NOW_NS, revocations=NO_REVOCATIONS)
    assert grant.rights == {Right.READ, Right.WRITE}


@pytest.mark.parametrize(
    "kwargs",
    [
        {"resources": ["coord:/apps"]},
        {"resources": ["coord:/apps/webx"]},
        {"rights": ["delete"]},
        {"rights": ["admin"]},
        {"max_depth": 3},
    ],
)
def test_issue_outside_the_policy_is_refused(kwargs: dict[str, object]) -> None:
    with pytest.raises(PermissionDeniedError) as info:
        issue(policy(), **kwargs)
    assert_refused(info, Reason.NOT_GRANTED, PermissionDeniedError)


def test_unknown_principal_and_admin() -> None:
    with pytest.raises(PermissionDeniedError):
        issue(policy(), holder=CAROL)
    cap = issue(policy(), holder=BOB, resources=["job:*"], rights=["delete", "admin"], max_depth=3)
    assert cap.max_depth == 3


def test_revoke_is_exact() -> None:
    p = policy()
    version = p.version
    assert p.revoke(ALICE.principal_id, ["coord:/apps/web"], ["write"]) == 1
    assert p.version == version + 1
    assert p.allows(ALICE.principal_id, Right.READ, "coord:/apps/web/x")
    assert not p.allows(ALICE.principal_id, Right.WRITE, "coord:/apps/web/x")
    with pytest.raises(NotFoundError):
        p.revoke(ALICE.principal_id, ["coord:/apps/web/x"])  # narrower than any entry: nothing to remove
    assert p.revoke(ALICE.principal_id) == 2
    assert p.entries(ALICE.principal_id) == []


def test_grant_adds_rights() -> None:
    p = policy()
    p.grant(ALICE.principal_id, "alice", ["dfs:/data"], ["delete"])
    [entry] = [e for e in p.entries(ALICE.principal_id) if e.resource == "dfs:/data"]
    assert entry.rights == (Right.READ, Right.WRITE, Right.DELETE)  # canonical order


def test_bytes_round_trip_and_corruption() -> None:
    p = policy()
    again = Policy.from_bytes(p.to_bytes())
    assert again.entries() == p.entries() and again.version == p.version
    for bad in (b"", b"\x00\x01", p.to_bytes()[:-2]):
        with pytest.raises(DataCorruptionError):
            Policy.from_bytes(bad)
