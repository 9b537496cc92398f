"""The authority's durable policy: which principal may hold which rights on which resources.

The authority only issues capabilities inside the policy: :meth:`Policy.issue` refuses anything else with
PermissionDeniedError (``reason="not_granted"``). A request is inside the policy when every requested
(resource, right) pair is covered by one entry of the principal (``admin`` implying every right, resources
matching as in :mod:`feitian.security.core.resources`), and the requested delegation depth is no more than
the entries allow.

Grants and revocations here are exact: :meth:`Policy.revoke` removes rights from entries whose resource is
exactly the one given; there are no negative entries, so revoking ``coord:/a/b`` from a principal granted
``coord:/a`` is a NotFoundError, not a hole. Removing an entry stops future issuing; capabilities already
issued stay valid until they expire unless their ids or holder are also put on the revocation list.

Pure data: the service persists :meth:`Policy.to_bytes` (and bumps nothing else: ``version`` counts changes).
"""

from __future__ import annotations

from collections.abc import Iterable

import msgspec

from feitian.errors import DataCorruptionError, InvalidArgumentError, NotFoundError
from feitian.security.core.capability import (
    DEFAULT_CAPABILITY_TTL_NS,
    DEFAULT_MAX_DEPTH,
    MAX_CAPABILITY_TTL_NS,
    MAX_DELEGATION_DEPTH,
    Capability,
    new_capability,
)
from feitian.security.core.identity import principal_id_for, validate_name
from feitian.security.core.reasons import Reason, refusal
from feitian.security.core.resources import canonical_resources, parse_resource
from feitian.security.core.rights import Right, canonical_rights, implied

__all__ = ["Policy", "PolicyEntry"]


class PolicyEntry(msgspec.Struct, frozen=True):
    """``principal`` may hold ``rights`` on ``resource``, delegating at most ``max_depth`` levels further."""

    principal_id: str
    principal_name: str
    resource: str
    rights: tuple[Right, ...]
    max_depth: int = DEFAULT_MAX_DEPTH


class _PolicyWire(msgspec.Struct, frozen=True, tag="policy"):
    version: int
    entries: list[PolicyEntry]


_ENCODER = msgspec.msgpack.Encoder()
_DECODER = msgspec.msgpack.Decoder(_PolicyWire)


class Policy:
    """A mutable set of :class:`PolicyEntry`, keyed by (principal id, resource)."""

    __slots__ = ("_entries", "version")

    def __init__(self, entries: Iterable[PolicyEntry] = (), *, version: int = 0) -> None:
        self.version = version
        self._entries: dict[tuple[str, str], PolicyEntry] = {}
        for entry in entries:
            self._put(entry)

    def _put(self, entry: PolicyEntry) -> None:
        self._entries[(entry.principal_id, entry.resource)] = entry

    def grant(
        self,
        principal_id: str,
        principal_name: str,
        resources: Iterable[str],
        rights: Iterable[Right | str],
        *,
        max_depth: int = DEFAULT_MAX_DEPTH,
    ) -> None:
        """Allow ``principal_id`` ``rights`` on each of ``resources`` (added to what it already has there)."""
        validate_name(principal_name)
        new_rights = frozenset(Right(r) for r in rights)
        resources_c = canonical_resources(resources)
        if not principal_id or not new_rights or not resources_c:
            raise InvalidArgumentError("policy grant: need a principal, at least one resource and one right")
        if not 0 <= max_depth <= MAX_DELEGATION_DEPTH:
            raise InvalidArgumentError(f"policy grant: max_depth {max_depth} outside 0..{MAX_DELEGATION_DEPTH}")
        for resource in resources_c:
            old = self._entries.get((principal_id, resource))
            merged = new_rights | frozenset(old.rights if old else ())
            self._put(PolicyEntry(principal_id, principal_name, resource, canonical_rights(merged), max_depth))
        self.version += 1

    def revoke(
        self,
        principal_id: str,
        resources: Iterable[str] | None = None,
        rights: Iterable[Right | str] | None = None,
    ) -> int:
        """Remove ``rights`` (all when None) from the principal's entries on exactly ``resources`` (all when
        None). Returns how many entries changed; NotFoundError when none did."""
        wanted = None if resources is None else set(canonical_resources(resources))
        removing = None if rights is None else frozenset(Right(r) for r in rights)
        changed = 0
        for key, entry in list(self._entries.items()):
            if entry.principal_id != principal_id or (wanted is not None and entry.resource not in wanted):
                continue
            left = frozenset() if removing is None else frozenset(entry.rights) - removing
            if left == frozenset(entry.rights):
                continue
            changed += 1
            if left:
                self._put(msgspec.structs.replace(entry, rights=canonical_rights(left)))
            else:
                del self._entries[key]
        if not changed:
            raise NotFoundError(f"policy revoke: no matching entry for principal {principal_id}")
        self.version += 1
        return changed

    def entries(self, principal_id: str | None = None) -> list[PolicyEntry]:
        """Entries (of one principal, or all), sorted by principal and resource."""
        return [e for k, e in sorted(self._entries.items()) if principal_id is None or k[0] == principal_id]

    def allowed_depth(self, principal_id: str, right: Right, resource: str) -> int | None:
        """The largest delegation depth of an entry allowing ``right`` on ``resource`` (None: not allowed)."""
        wanted = parse_resource(resource)
        depths = [
            e.max_depth
            for e in self.entries(principal_id)
            if right in implied(e.rights) and parse_resource(e.resource).covers(wanted)
        ]
        return max(depths, default=None)

    def allows(self, principal_id: str, right: Right, resource: str) -> bool:
        return self.allowed_depth(principal_id, right, resource) is not None

    def issue(
        self,
        *,
        holder_key: bytes,
        holder_name: str,
        resources: Iterable[str],
        rights: Iterable[Right | str],
        now_ns: int,
        authority_key: bytes,
        ttl_ns: int = DEFAULT_CAPABILITY_TTL_NS,
        max_depth: int = 0,
    ) -> Capability:
        """An unsigned root capability for ``holder_key``, or PermissionDeniedError if the policy forbids it.

        Sign it with :func:`~feitian.security.sign_capability` and the authority key.
        """
        if not 0 < ttl_ns <= MAX_CAPABILITY_TTL_NS:
            raise InvalidArgumentError(f"issue capability: ttl {ttl_ns}ns outside (0, {MAX_CAPABILITY_TTL_NS}]")
        principal_id = principal_id_for(holder_key)
        resources_c = canonical_resources(resources)
        rights_c = canonical_rights(Right(r) for r in rights)
        missing = []
        depth = MAX_DELEGATION_DEPTH
        for resource in resources_c:
            for right in rights_c:
                allowed = self.allowed_depth(principal_id, right, resource)
                if allowed is None:
                    missing.append(f"{right} {resource}")
                else:
                    depth = min(depth, allowed)
        if missing:
            raise refusal(
                Reason.NOT_GRANTED,
                f"issue capability to {holder_name} ({principal_id}): the policy does not allow " + ", ".join(missing),
                principal_id=principal_id,
            )
        if max_depth > depth:
            raise refusal(
                Reason.NOT_GRANTED,
                f"issue capability to {holder_name} ({principal_id}): delegation depth {max_depth} over the "
                f"policy's {depth}",
                principal_id=principal_id,
            )
        return new_capability(
            issuer_key=authority_key,
            holder_key=holder_key,
            holder_name=holder_name,
            resources=resources_c,
            rights=rights_c,
            not_before_ns=now_ns,
            expires_ns=now_ns + ttl_ns,
            max_depth=max_depth,
        )

    def to_bytes(self) -> bytes:
        return _ENCODER.encode(_PolicyWire(version=self.version, entries=self.entries()))

    @classmethod
    def from_bytes(cls, data: bytes) -> Policy:
        """Decode :meth:`to_bytes`; anything else raises DataCorruptionError."""
        try:
            wire = _DECODER.decode(data)
            for entry in wire.entries:
                parse_resource(entry.resource)
                validate_name(entry.principal_name)
        except (msgspec.DecodeError, UnicodeDecodeError, InvalidArgumentError) as exc:
            raise DataCorruptionError(f"policy: cannot decode ({exc})") from None
        return cls(wire.entries, version=wire.version)
