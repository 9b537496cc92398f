"""Capabilities: signed, delegable, offline-verifiable grants of rights on resources (ZK-2).

A :class:`Capability` names its holder (an Ed25519 public key), the resources and rights it grants, a validity
window, the remaining delegation depth, and its issuer. The cluster authority issues root capabilities; a
holder may *delegate* a narrower capability to another principal by signing a new link with its own key. A
:class:`CapabilityChain` is the list of links from the authority's root to the presented leaf, and
:func:`verify_chain` checks all of it with public keys only:

* link 0 is issued by the authority key; link *i* is issued by the holder of link *i-1* and names it as
  parent;
* every signature is valid (Ed25519 over ``"feitian-capability-v1\\0" + body``) and every id matches its body;
* no link widens its parent: resources covered by the parent's, rights within the parent's (``admin`` implies
  all), expiry not later, delegation depth strictly smaller;
* every link is inside its validity window (``not_before`` may be ``skew_ns`` in the future) and none is
  revoked, by id or by holder.

The effective :class:`Grant` is the leaf's resources and rights over the intersection of the windows, so it is
contained in every ancestor. Presenting it still requires the connection to be authenticated as the holder
(:class:`~feitian.security.core.authorize.Authorizer` checks that).

Wire format (msgpack, arrays): ``CapabilityChain = ["chain", [SignedCapability...]]``,
``SignedCapability = ["scap", body, signature]``, ``body = msgpack(Capability)``; see docs/security.md.
Pure: no clock, no randomness.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Annotated, NoReturn

import msgspec

from feitian.base.units import SECOND_NS
from feitian.errors import FeitianError, InvalidArgumentError
from feitian.security.core.identity import (
    ED25519_PUBLIC_KEY_BYTES,
    ED25519_SIGNATURE_BYTES,
    Signer,
    principal_id_for,
    validate_name,
    verify_signature,
)
from feitian.security.core.reasons import Reason, decode_credential, refusal
from feitian.security.core.resources import (
    MAX_RESOURCE_CHARS,
    Resource,
    canonical_resources,
    parse_resource,
    resources_cover,
)
from feitian.security.core.revocation import RevocationList
from feitian.security.core.rights import Right, canonical_rights, implied, rights_cover

__all__ = [
    "CAPABILITY_ID_BYTES",
    "CAPABILITY_VERSION",
    "DEFAULT_CAPABILITY_TTL_NS",
    "DEFAULT_CLOCK_SKEW_NS",
    "DEFAULT_MAX_DEPTH",
    "MAX_CAPABILITY_BYTES",
    "MAX_CAPABILITY_TTL_NS",
    "MAX_CHAIN_BYTES",
    "MAX_CHAIN_LENGTH",
    "MAX_DELEGATION_DEPTH",
    "MAX_RESOURCES_PER_CAPABILITY",
    "Capability",
    "CapabilityChain",
    "Grant",
    "SignedCapability",
    "capability_id",
    "delegate",
    "issue_capability",
    "new_capability",
    "revocation_deadline",
    "sign_capability",
    "verify_chain",
]

CAPABILITY_VERSION = 1
CAPABILITY_ID_BYTES = 16
MAX_CHAIN_LENGTH = 8
MAX_DELEGATION_DEPTH = MAX_CHAIN_LENGTH - 1
DEFAULT_MAX_DEPTH = 2
MAX_RESOURCES_PER_CAPABILITY = 64
MAX_CAPABILITY_BYTES = 16 * 1024
MAX_CHAIN_BYTES = MAX_CHAIN_LENGTH * (MAX_CAPABILITY_BYTES + 128)
MAX_CAPABILITY_TTL_NS = 24 * 3600 * SECOND_NS
DEFAULT_CAPABILITY_TTL_NS = 3600 * SECOND_NS
DEFAULT_CLOCK_SKEW_NS = 5 * SECOND_NS

_SIGNING_DOMAIN = b"feitian-capability-v1\x00"
_ID_DOMAIN = b"feitian-capability-id-v1\x00"

_KEY_LEN = ED25519_PUBLIC_KEY_BYTES
_Key = Annotated[bytes, msgspec.Meta(min_length=_KEY_LEN, max_length=_KEY_LEN)]
_Id = Annotated[bytes, msgspec.Meta(max_length=CAPABILITY_ID_BYTES)]
_ResourceText = Annotated[str, msgspec.Meta(min_length=1, max_length=MAX_RESOURCE_CHARS)]
_NonNegative = Annotated[int, msgspec.Meta(ge=0)]


class Capability(msgspec.Struct, frozen=True, array_like=True, forbid_unknown_fields=True, tag="cap"):
    """The signed body of one link. Times are wall-clock nanoseconds since the Unix epoch."""

    version: int
    id: _Id
    parent_id: _Id  # b"" for a root issued by the authority
    issuer_key: _Key
    holder_key: _Key
    holder_name: Annotated[str, msgspec.Meta(min_length=1, max_length=64)]
    resources: Annotated[tuple[_ResourceText, ...], msgspec.Meta(max_length=MAX_RESOURCES_PER_CAPABILITY)]
    rights: Annotated[tuple[Right, ...], msgspec.Meta(max_length=len(Right))]
    not_before_ns: _NonNegative
    expires_ns: _NonNegative
    max_depth: Annotated[int, msgspec.Meta(ge=0, le=MAX_DELEGATION_DEPTH)]  # further delegations allowed

    @property
    def holder_id(self) -> str:
        return principal_id_for(self.holder_key)

    def describe(self) -> str:
        return f"capability {self.id.hex()} held by {self.holder_name} ({self.holder_id})"


class SignedCapability(msgspec.Struct, frozen=True, array_like=True, forbid_unknown_fields=True, tag="scap"):
    """One link on the wire: the encoded :class:`Capability` and the issuer's signature over it."""

    body: Annotated[bytes, msgspec.Meta(max_length=MAX_CAPABILITY_BYTES)]
    signature: Annotated[bytes, msgspec.Meta(max_length=ED25519_SIGNATURE_BYTES)]

    def open(self) -> Capability:
        """Decode the body *without verifying it* (for display, and the first step of verification)."""
        return decode_credential(_CAPABILITY_DECODER, self.body, "capability")


class CapabilityChain(msgspec.Struct, frozen=True, array_like=True, forbid_unknown_fields=True, tag="chain"):
    """The links from the authority's root capability (first) to the presented one (last)."""

    links: Annotated[tuple[SignedCapability, ...], msgspec.Meta(max_length=MAX_CHAIN_LENGTH)]

    @property
    def leaf(self) -> Capability:
        if not self.links:
            raise InvalidArgumentError("capability chain: no links")
        return self.links[-1].open()

    def to_bytes(self) -> bytes:
        return _ENCODER.encode(self)

    @classmethod
    def from_bytes(cls, data: bytes) -> CapabilityChain:
        """Decode a chain; anything else raises UnauthenticatedError (missing, truncated, malformed)."""
        if len(data) > MAX_CHAIN_BYTES:
            raise refusal(Reason.MALFORMED, f"capability chain: {len(data)} bytes, over {MAX_CHAIN_BYTES}")
        return decode_credential(_CHAIN_DECODER, data, "capability chain")


_ENCODER = msgspec.msgpack.Encoder()
_CAPABILITY_DECODER = msgspec.msgpack.Decoder(Capability)
_CHAIN_DECODER = msgspec.msgpack.Decoder(CapabilityChain)


@dataclass(frozen=True, slots=True)
class Grant:
    """What a verified chain (or token) lets its holder do, and what must stay unrevoked for it to hold.

    ``capability_ids`` and ``principal_ids`` are every capability and every non-authority principal the grant
    depends on; an authorizer re-checks them whenever the revocation list changes.
    """

    holder_key: bytes
    holder_id: str
    resources: tuple[Resource, ...]
    rights: frozenset[Right]
    not_before_ns: int
    expires_ns: int
    capability_ids: tuple[bytes, ...]
    principal_ids: tuple[str, ...]
    source: str = "capability"  # or "token"

    def allows(self, right: Right, resource: Resource) -> bool:
        return right in implied(self.rights) and any(r.covers(resource) for r in self.resources)

    def covers(self, resources: Iterable[Resource], rights: Iterable[Right]) -> bool:
        return rights_cover(self.rights, rights) and resources_cover(self.resources, resources)

    def describe(self) -> str:
        rights = ",".join(canonical_rights(self.rights))
        return f"{rights} on {' '.join(map(str, self.resources))} until {self.expires_ns}"


def capability_id(cap: Capability) -> bytes:
    """The id of a capability: 16 bytes of SHA-256 over its canonical encoding with an empty id."""
    blank = msgspec.structs.replace(cap, id=b"")
    return hashlib.sha256(_ID_DOMAIN + _ENCODER.encode(blank)).digest()[:CAPABILITY_ID_BYTES]


def revocation_deadline(now_ns: int) -> int:
    """When every capability valid at ``now_ns`` has expired: a safe ``until_ns`` for id revocations."""
    return now_ns + MAX_CAPABILITY_TTL_NS + DEFAULT_CLOCK_SKEW_NS


def new_capability(
    *,
    issuer_key: bytes,
    holder_key: bytes,
    holder_name: str,
    resources: Iterable[str],
    rights: Iterable[Right | str],
    not_before_ns: int,
    expires_ns: int,
    max_depth: int = DEFAULT_MAX_DEPTH,
    parent_id: bytes = b"",
) -> Capability:
    """Build a well-formed capability (normalised resources and rights, computed id); not yet signed."""
    problems = []
    resources_c = canonical_resources(resources)
    rights_c = canonical_rights(Right(r) for r in rights)
    if not 1 <= len(resources_c) <= MAX_RESOURCES_PER_CAPABILITY:
        problems.append(f"1 to {MAX_RESOURCES_PER_CAPABILITY} resources required, got {len(resources_c)}")
    if not rights_c:
        problems.append("at least one right required")
    if not 0 <= not_before_ns < expires_ns:
        problems.append(f"need 0 <= not_before_ns ({not_before_ns}) < expires_ns ({expires_ns})")
    elif expires_ns - not_before_ns > MAX_CAPABILITY_TTL_NS:
        lifetime_s = (expires_ns - not_before_ns) // SECOND_NS
        problems.append(f"lifetime {lifetime_s}s over {MAX_CAPABILITY_TTL_NS // SECOND_NS}s")
    if not 0 <= max_depth <= MAX_DELEGATION_DEPTH:
        problems.append(f"max_depth {max_depth} outside 0..{MAX_DELEGATION_DEPTH}")
    if len(issuer_key) != ED25519_PUBLIC_KEY_BYTES or len(holder_key) != ED25519_PUBLIC_KEY_BYTES:
        problems.append("issuer and holder keys must be 32-byte Ed25519 public keys")
    if len(parent_id) not in (0, CAPABILITY_ID_BYTES):
        problems.append(f"parent_id must be empty or {CAPABILITY_ID_BYTES} bytes")
    if problems:
        raise InvalidArgumentError("new capability: " + "; ".join(problems), problems=problems)
    cap = Capability(
        version=CAPABILITY_VERSION,
        id=b"",
        parent_id=parent_id,
        issuer_key=issuer_key,
        holder_key=holder_key,
        holder_name=validate_name(holder_name),
        resources=resources_c,
        rights=rights_c,
        not_before_ns=not_before_ns,
        expires_ns=expires_ns,
        max_depth=max_depth,
    )
    return msgspec.structs.replace(cap, id=capability_id(cap))


def sign_capability(cap: Capability, signer: Signer) -> SignedCapability:
    """Sign ``cap`` with its issuer's key. No attenuation check: :func:`delegate` is the checked way."""
    if signer.public_key != cap.issuer_key:
        raise InvalidArgumentError(f"sign {cap.describe()}: the signer is not the capability's issuer")
    body = _ENCODER.encode(cap)
    return SignedCapability(body=body, signature=signer.sign(_SIGNING_DOMAIN + body))


def issue_capability(
    authority: Signer,
    *,
    holder_key: bytes,
    holder_name: str,
    resources: Iterable[str],
    rights: Iterable[Right | str],
    now_ns: int,
    ttl_ns: int = DEFAULT_CAPABILITY_TTL_NS,
    max_depth: int = DEFAULT_MAX_DEPTH,
) -> CapabilityChain:
    """A one-link chain issued by the authority (policy checks are :class:`feitian.security.Policy`'s job)."""
    cap = new_capability(
        issuer_key=authority.public_key,
        holder_key=holder_key,
        holder_name=holder_name,
        resources=resources,
        rights=rights,
        not_before_ns=now_ns,
        expires_ns=now_ns + ttl_ns,
        max_depth=max_depth,
    )
    return CapabilityChain(links=(sign_capability(cap, authority),))


def delegate(
    chain: CapabilityChain,
    signer: Signer,
    *,
    holder_key: bytes,
    holder_name: str,
    now_ns: int,
    resources: Iterable[str] | None = None,
    rights: Iterable[Right | str] | None = None,
    expires_ns: int | None = None,
    max_depth: int | None = None,
) -> CapabilityChain:
    """Extend ``chain`` with a link from its holder (``signer``) to ``holder_key``.

    Omitted fields are inherited (depth minus one). Raises :class:`InvalidArgumentError` instead of producing
    a link verifiers would refuse: a wider scope, a later expiry, or a parent with no delegation depth left.
    """
    if len(chain.links) >= MAX_CHAIN_LENGTH:
        raise InvalidArgumentError(f"delegate: chain already has {MAX_CHAIN_LENGTH} links")
    parent = chain.leaf
    if signer.public_key != parent.holder_key:
        raise InvalidArgumentError(f"delegate {parent.describe()}: only its holder can delegate it")
    if parent.max_depth < 1:
        raise InvalidArgumentError(f"delegate {parent.describe()}: it may not be delegated further")
    cap = new_capability(
        issuer_key=parent.holder_key,
        holder_key=holder_key,
        holder_name=holder_name,
        resources=parent.resources if resources is None else resources,
        rights=parent.rights if rights is None else rights,
        not_before_ns=now_ns,
        expires_ns=parent.expires_ns if expires_ns is None else expires_ns,
        max_depth=parent.max_depth - 1 if max_depth is None else max_depth,
        parent_id=parent.id,
    )
    widening = _widening(parent, cap)
    if widening:
        raise InvalidArgumentError(f"delegate {parent.describe()}: would widen it ({widening})")
    return CapabilityChain(links=(*chain.links, sign_capability(cap, signer)))


def _widening(parent: Capability, child: Capability) -> str | None:
    """Why ``child`` is not an attenuation of ``parent`` (None when it is one)."""
    if not resources_cover(_resources(parent), _resources(child)):
        return f"resources {list(child.resources)} not within {list(parent.resources)}"
    if not rights_cover(parent.rights, child.rights):
        return f"rights {[str(r) for r in child.rights]} not within {[str(r) for r in parent.rights]}"
    if child.expires_ns > parent.expires_ns:
        return f"expiry {child.expires_ns} after the parent's {parent.expires_ns}"
    if parent.max_depth < 1 or child.max_depth > parent.max_depth - 1:
        return f"delegation depth {child.max_depth} with parent depth {parent.max_depth}"
    return None


def _resources(cap: Capability) -> tuple[Resource, ...]:
    try:
        return tuple(parse_resource(r) for r in cap.resources)
    except InvalidArgumentError as exc:
        raise refusal(Reason.MALFORMED, f"{cap.describe()}: {exc.message}") from None


def verify_chain(
    chain: CapabilityChain | Sequence[SignedCapability],
    *,
    authority_key: bytes,
    now_ns: int,
    revocations: RevocationList,
    skew_ns: int = DEFAULT_CLOCK_SKEW_NS,
) -> Grant:
    """Verify every link of ``chain`` (see the module docstring) and return the effective grant.

    Raises UnauthenticatedError or PermissionDeniedError with a ``reason`` (:class:`Reason`), the failing
    ``link`` index and the ``capability_id`` (hex) as fields. ``now_ns`` is wall-clock time.
    """
    links = chain.links if isinstance(chain, CapabilityChain) else tuple(chain)
    if not links:
        raise refusal(Reason.MISSING, "capability chain: no capability presented")
    if len(links) > MAX_CHAIN_LENGTH:
        raise refusal(Reason.MALFORMED, f"capability chain: {len(links)} links, over {MAX_CHAIN_LENGTH}")
    parent: Capability | None = None
    caps: list[Capability] = []
    holder_ids: list[str] = []
    for index, link in enumerate(links):
        cap = link.open()
        holder_ids.append(
            _verify_link(index, len(links), cap, link, parent, authority_key, now_ns, revocations, skew_ns)
        )
        caps.append(cap)
        parent = cap
    leaf = caps[-1]
    return Grant(
        holder_key=leaf.holder_key,
        holder_id=holder_ids[-1],
        resources=_resources(leaf),
        rights=frozenset(leaf.rights),
        not_before_ns=max(c.not_before_ns for c in caps),
        expires_ns=min(c.expires_ns for c in caps),
        capability_ids=tuple(c.id for c in caps),
        principal_ids=tuple(holder_ids),
    )


def _verify_link(
    index: int,
    count: int,
    cap: Capability,
    link: SignedCapability,
    parent: Capability | None,
    authority_key: bytes,
    now_ns: int,
    revocations: RevocationList,
    skew_ns: int,
) -> str:
    """Check one link against its parent; returns the holder's principal id."""

    def fail(reason: Reason, why: str) -> NoReturn:
        raise _link_error(reason, index, count, cap, why)

    if cap.version != CAPABILITY_VERSION:
        fail(Reason.MALFORMED, f"unsupported format version {cap.version}")
    if parent is None and cap.issuer_key != authority_key:
        fail(Reason.UNTRUSTED_ISSUER, "not issued by this cluster's authority")
    if parent is not None and cap.issuer_key != parent.holder_key:
        fail(Reason.BROKEN_CHAIN, "not issued by the holder of the previous link")
    if not verify_signature(cap.issuer_key, link.signature, _SIGNING_DOMAIN + link.body):
        fail(Reason.BAD_SIGNATURE, "signature does not verify (forged or altered)")
    if cap.id != capability_id(cap):
        fail(Reason.MALFORMED, "id does not match the contents")
    if cap.parent_id != (b"" if parent is None else parent.id):
        fail(Reason.BROKEN_CHAIN, "parent id does not name the previous link")
    if not cap.resources or not cap.rights:
        fail(Reason.MALFORMED, "no resources or no rights")
    if not cap.not_before_ns < cap.expires_ns <= cap.not_before_ns + MAX_CAPABILITY_TTL_NS:
        fail(Reason.MALFORMED, "validity window empty or longer than the maximum lifetime")
    _resources(cap)  # every resource must parse
    if parent is not None:
        widening = _widening(parent, cap)
        if widening:
            fail(Reason.WIDENED_DELEGATION, f"delegation widens its parent: {widening}")
    if cap.not_before_ns > now_ns + skew_ns:
        fail(Reason.NOT_YET_VALID, f"not valid before {cap.not_before_ns} (now {now_ns})")
    if now_ns >= cap.expires_ns:
        fail(Reason.EXPIRED, f"expired at {cap.expires_ns} (now {now_ns})")
    if revocations.is_id_revoked(cap.id, now_ns):
        fail(Reason.REVOKED_ID, f"revoked (revocation list version {revocations.version})")
    holder_id = principal_id_for(cap.holder_key)
    if revocations.is_holder_revoked(holder_id, now_ns):
        fail(Reason.REVOKED_HOLDER, f"holder revoked (revocation list version {revocations.version})")
    return holder_id


def _link_error(reason: Reason, index: int, count: int, cap: Capability, why: str) -> FeitianError:
    return refusal(
        reason,
        f"capability chain link {index + 1}/{count} ({cap.describe()}): {why}",
        link=index,
        capability_id=cap.id.hex(),
        holder_id=cap.holder_id,
    )
