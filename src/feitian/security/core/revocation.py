"""The revocation list: capability ids and holders that verifiers must refuse before their expiry.

The cluster authority is the only writer. Each change (:meth:`RevocationList.revoke_id`,
:meth:`RevocationList.revoke_holder`) returns a new list with ``version + 1``; a list is immutable, so a
verifier notices a change by the list *instance* changing (see :class:`~feitian.security.core.authorize.
Authorizer`).

* Revoking an **id** refuses every chain containing that capability, so revoking a capability also revokes
  every delegation made from it. An id entry is kept until ``until_ns``: by default the time by which every
  capability alive at revocation has expired (``now + MAX_CAPABILITY_TTL_NS + skew``); after that the entry is
  useless and :meth:`RevocationList.pruned` drops it.
* Revoking a **holder** (a principal id) refuses every chain in which that principal holds a link, every token
  it minted, and (in :class:`~feitian.security.Guard`) every connection it opens. Holder entries are kept
  forever unless ``until_ns`` is given: they are for compromised keys, and the key should never be trusted
  again.

**Propagation bound.** Verifiers hold a :class:`RevocationView`: the driver refreshes it from the authority
every ``refresh_interval`` (the service decides; the default bound below assumes 10 s) and the view refuses to
answer once the last successful refresh is older than ``max_staleness_ns`` (default 30 s): every capability
check then fails with :class:`~feitian.errors.UnavailableError` (``reason="revocations_stale"``). So a
revocation published by the authority at time *t* is honoured by every verifier that is still accepting
capabilities by *t* + ``max_staleness_ns`` (plus the clock skew between the authority and the verifier, which
the view does not depend on: staleness is measured on the verifier's own monotonic clock). Fail closed, not
open.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

import msgspec

from feitian.errors import DataCorruptionError, InvalidArgumentError, UnavailableError, UnavailableReason

__all__ = [
    "DEFAULT_MAX_STALENESS_NS",
    "MAX_REVOCATION_LIST_BYTES",
    "RevocationList",
    "RevocationView",
]

DEFAULT_MAX_STALENESS_NS = 30 * 1_000_000_000
MAX_REVOCATION_LIST_BYTES = 64 * 1024 * 1024
_FOREVER = -1  # wire value of "no until" for holder entries


class _RevokedId(msgspec.Struct, frozen=True, array_like=True):
    id: bytes
    until_ns: int


class _RevokedHolder(msgspec.Struct, frozen=True, array_like=True):
    principal_id: str
    until_ns: int


class _RevocationListWire(msgspec.Struct, frozen=True, tag="revocations"):
    version: int
    ids: list[_RevokedId]
    holders: list[_RevokedHolder]


_ENCODER = msgspec.msgpack.Encoder()
_DECODER = msgspec.msgpack.Decoder(_RevocationListWire)


class RevocationList:
    """An immutable set of revoked capability ids and holder principal ids, with the authority's version."""

    __slots__ = ("_holders", "_ids", "_version")

    def __init__(
        self,
        version: int = 0,
        ids: Mapping[bytes, int] | None = None,
        holders: Mapping[str, int | None] | None = None,
    ) -> None:
        if version < 0:
            raise InvalidArgumentError(f"revocation list: negative version {version}")
        self._version = version
        self._ids: dict[bytes, int] = dict(ids or {})
        self._holders: dict[str, int | None] = dict(holders or {})

    @property
    def version(self) -> int:
        return self._version

    @property
    def ids(self) -> Mapping[bytes, int]:
        """Revoked capability id -> wall time (ns) until which the entry is kept."""
        return dict(self._ids)

    @property
    def holders(self) -> Mapping[str, int | None]:
        """Revoked principal id -> wall time (ns) until which the entry is kept (None: forever)."""
        return dict(self._holders)

    def __len__(self) -> int:
        return len(self._ids) + len(self._holders)

    def __repr__(self) -> str:
        return f"RevocationList(version={self._version}, ids={len(self._ids)}, holders={len(self._holders)})"

    def is_id_revoked(self, capability_id: bytes, now_ns: int) -> bool:
        until = self._ids.get(capability_id)
        return until is not None and now_ns < until

    def is_holder_revoked(self, principal_id: str, now_ns: int) -> bool:
        if principal_id not in self._holders:
            return False
        until = self._holders[principal_id]
        return until is None or now_ns < until

    def first_revoked_id(self, capability_ids: Iterable[bytes], now_ns: int) -> bytes | None:
        return next((i for i in capability_ids if self.is_id_revoked(i, now_ns)), None)

    def first_revoked_holder(self, principal_ids: Iterable[str], now_ns: int) -> str | None:
        return next((p for p in principal_ids if self.is_holder_revoked(p, now_ns)), None)

    def revoke_id(self, capability_id: bytes, *, until_ns: int) -> RevocationList:
        """A new list (version + 1) that also revokes ``capability_id`` until ``until_ns``.

        Use :func:`~feitian.security.core.capability.revocation_deadline` for ``until_ns`` when the
        capability's own expiry is unknown.
        """
        if not capability_id:
            raise InvalidArgumentError("revoke capability: empty id")
        ids = dict(self._ids)
        ids[capability_id] = max(until_ns, ids.get(capability_id, until_ns))
        return RevocationList(self._version + 1, ids, self._holders)

    def revoke_holder(self, principal_id: str, *, until_ns: int | None = None) -> RevocationList:
        """A new list (version + 1) that also revokes every credential held or minted by ``principal_id``."""
        if not principal_id:
            raise InvalidArgumentError("revoke holder: empty principal id")
        holders = dict(self._holders)
        holders[principal_id] = _later(holders.get(principal_id, until_ns), until_ns)
        return RevocationList(self._version + 1, self._ids, holders)

    def merge(self, other: RevocationList) -> RevocationList:
        """The union of both lists (each entry kept until its later deadline), with the higher version."""
        ids = dict(self._ids)
        for key, until in other._ids.items():
            ids[key] = max(until, ids.get(key, until))
        holders = dict(self._holders)
        for holder, h_until in other._holders.items():
            holders[holder] = _later(holders[holder], h_until) if holder in holders else h_until
        return RevocationList(max(self._version, other._version), ids, holders)

    def pruned(self, now_ns: int) -> RevocationList:
        """This list without entries past their deadline (same version: no valid credential changes)."""
        ids = {k: u for k, u in self._ids.items() if u > now_ns}
        holders = {k: u for k, u in self._holders.items() if u is None or u > now_ns}
        return RevocationList(self._version, ids, holders)

    def to_bytes(self) -> bytes:
        wire = _RevocationListWire(
            version=self._version,
            ids=[_RevokedId(k, u) for k, u in sorted(self._ids.items())],
            holders=[_RevokedHolder(k, _FOREVER if u is None else u) for k, u in sorted(self._holders.items())],
        )
        return _ENCODER.encode(wire)

    @classmethod
    def from_bytes(cls, data: bytes) -> RevocationList:
        """Decode :meth:`to_bytes`; anything else raises :class:`~feitian.errors.DataCorruptionError`."""
        if len(data) > MAX_REVOCATION_LIST_BYTES:
            raise DataCorruptionError(f"revocation list: {len(data)} bytes, over {MAX_REVOCATION_LIST_BYTES}")
        try:
            wire = _DECODER.decode(data)
        except (msgspec.DecodeError, UnicodeDecodeError) as exc:
            raise DataCorruptionError(f"revocation list: cannot decode ({exc})") from None
        if wire.version < 0:
            raise DataCorruptionError(f"revocation list: negative version {wire.version}")
        ids = {e.id: e.until_ns for e in wire.ids}
        holders = {e.principal_id: (None if e.until_ns == _FOREVER else e.until_ns) for e in wire.holders}
        return cls(wire.version, ids, holders)


def _later(a: int | None, b: int | None) -> int | None:
    if a is None or b is None:
        return None
    return max(a, b)


class RevocationView:
    """A verifier's copy of the revocation list, refusing to answer when it is older than the stated bound.

    ``now_ns`` arguments here are the verifier's *monotonic* clock: staleness must not depend on wall-clock
    steps. The driver calls :meth:`update` after each successful fetch from the authority (also when the
    version did not change: that is what proves the copy is fresh) and :meth:`current` before verifying
    anything.
    """

    __slots__ = ("_fetched_at_ns", "_list", "max_staleness_ns")

    def __init__(self, *, max_staleness_ns: int = DEFAULT_MAX_STALENESS_NS) -> None:
        if max_staleness_ns <= 0:
            raise InvalidArgumentError(f"revocation view: max_staleness_ns {max_staleness_ns} must be > 0")
        self.max_staleness_ns = max_staleness_ns
        self._list = RevocationList()
        self._fetched_at_ns: int | None = None

    def update(self, revocations: RevocationList, now_ns: int) -> bool:
        """Install a fetched list. A list older than the one held is ignored (a lagging replica's answer) and
        does not count as a refresh; returns whether it was accepted."""
        if revocations.version < self._list.version:
            return False
        if revocations.version > self._list.version:
            self._list = revocations  # same version means same contents: keep the instance (and caches)
        self._fetched_at_ns = now_ns
        return True

    def current(self, now_ns: int) -> RevocationList:
        """The list to verify against; :class:`~feitian.errors.UnavailableError` when too old to trust."""
        if self._fetched_at_ns is None:
            raise UnavailableError(
                "verify credentials: no revocation list fetched from the cluster authority yet",
                reason=UnavailableReason.REVOCATIONS_STALE,
            )
        age = now_ns - self._fetched_at_ns
        if age > self.max_staleness_ns:
            raise UnavailableError(
                f"verify credentials: revocation list is {age / 1e9:.1f}s old, over the "
                f"{self.max_staleness_ns / 1e9:.1f}s bound",
                reason=UnavailableReason.REVOCATIONS_STALE,
            )
        return self._list

    def age_ns(self, now_ns: int) -> int | None:
        return None if self._fetched_at_ns is None else now_ns - self._fetched_at_ns
