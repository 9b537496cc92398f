"""Property: a delegation chain never grants more than any of its ancestors (ZK-2).

Random chains where each link either attenuates its parent or tries a random widening (resources, rights,
expiry, depth), each link properly signed by the previous holder. verify_chain must either refuse the chain
with a capability error, or return a grant contained in every link; and whenever every link is an honest
attenuation (judged by an independent oracle), it must accept.
"""

from __future__ import annotations

import itertools

from hypothesis import event, given, settings
from hypothesis import strategies as st
from test_security_resources import oracle_covers, resource_texts
from zk_fixtures import AUTHORITY, NO_REVOCATIONS, NOW_NS, PEOPLE, SECOND_NS

from feitian.errors import PermissionDeniedError, UnauthenticatedError
from feitian.security import (
    Capability,
    CapabilityChain,
    Reason,
    Right,
    implied,
    new_capability,
    parse_resource,
    sign_capability,
    verify_chain,
)

rights_sets = st.sets(st.sampled_from(list(Right)), min_size=1, max_size=4)


@st.composite
def link_specs(draw: st.DrawFn, parent: Capability | None) -> dict[str, object]:
    honest = parent is not None and draw(st.integers(0, 4)) > 0  # mostly honest: reach long chains
    if honest and parent is not None:
        resources = draw(st.lists(st.sampled_from(parent.resources), min_size=1, max_size=3))
        extra = draw(st.lists(resource_texts(), max_size=2))
        resources += [r for r in extra if any(oracle_covers(p, r) for p in parent.resources)]
        rights = draw(st.sets(st.sampled_from(sorted(implied(parent.rights))), min_size=1))
        expires = NOW_NS + draw(st.integers(1, (parent.expires_ns - NOW_NS) // SECOND_NS)) * SECOND_NS
        depth = draw(st.integers(0, max(parent.max_depth - 1, 0)))
    else:
        resources = draw(st.lists(resource_texts(), min_size=1, max_size=3))
        rights = draw(rights_sets)
        expires = NOW_NS + draw(st.integers(1, 3600)) * SECOND_NS
        depth = draw(st.integers(0, 4))
    return {"resources": resources, "rights": rights, "expires_ns": expires, "max_depth": depth}


@st.composite
def chains(draw: st.DrawFn) -> tuple[CapabilityChain, list[Capability]]:
    length = draw(st.integers(1, 4))
    issuer = AUTHORITY
    parent: Capability | None = None
    links, caps = [], []
    for _ in range(length):
        holder = draw(st.sampled_from(PEOPLE))
        spec = draw(link_specs(parent))
        cap = new_capability(
            issuer_key=issuer.public_key,
            holder_key=holder.public_key,
            holder_name=holder.name,
            not_before_ns=NOW_NS - SECOND_NS,
            parent_id=b"" if parent is None else parent.id,
            **spec,  # type: ignore[arg-type]
        )
        links.append(sign_capability(cap, issuer))
        caps.append(cap)
        issuer, parent = holder, cap
    return CapabilityChain(links=tuple(links)), caps


def honest(parent: Capability, child: Capability) -> bool:
    return (
        all(any(oracle_covers(p, c) for p in parent.resources) for c in child.resources)
        and set(child.rights) <= implied(parent.rights)
        and child.expires_ns <= parent.expires_ns
        and parent.max_depth >= 1
        and child.max_depth <= parent.max_depth - 1
    )


@settings(max_examples=300, deadline=None)
@given(chains(), st.sampled_from(list(Right)), resource_texts())
def test_delegation_never_widens(
    generated: tuple[CapabilityChain, list[Capability]], right: Right, wanted: str
) -> None:
    chain, caps = generated
    all_honest = all(honest(p, c) for p, c in itertools.pairwise(caps))
    try:
        grant = verify_chain(chain, authority_key=AUTHORITY.public_key, now_ns=NOW_NS, revocations=NO_REVOCATIONS)
    except PermissionDeniedError as exc:
        assert exc.fields["reason"] == Reason.WIDENED_DELEGATION
        assert not all_honest, f"an honest chain was refused: {exc!r}"
        event("refused as widening")
        return
    except UnauthenticatedError as exc:  # pragma: no cover - would be a bug: the chain is well-signed
        raise AssertionError(f"unexpected refusal {exc!r}") from exc
    assert all_honest, "a widening chain was accepted"
    event(f"accepted, {len(caps)} links")
    for cap in caps:
        assert all(any(oracle_covers(p, str(r)) for p in cap.resources) for r in grant.resources)
        assert implied(grant.rights) <= implied(cap.rights)
        assert grant.expires_ns <= cap.expires_ns
    if grant.allows(right, parse_resource(wanted)):
        for cap in caps:
            assert right in implied(cap.rights) and any(oracle_covers(p, wanted) for p in cap.resources)
