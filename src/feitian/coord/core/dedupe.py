"""Results of recent writes per client, so a retried write returns its first result instead of applying twice.

A client tags each write with its ``client_id`` and an increasing ``request_seq``. The table remembers the
results (errors included) of the last ``dedupe_window`` sequence numbers per client; a retry of one of them gets
the stored result. A client is a (principal, client_id) pair: another principal using the same client id is
another client and never sees these results. Each result keeps a fingerprint of its request: a sequence number
reused for a different request is refused, not answered with the other request's result. A retry older than
the window cannot be answered and is refused (its outcome is unknown), so a client keeps at most
``dedupe_window`` writes in flight.

Each remembered result carries the session its write was made under. When a session ends, the results written
under it are forgotten (a retry of such a write meets the dead session and fails with SessionExpiredError, so it
cannot apply twice); a client left with no results is forgotten. Beyond ``max_dedupe_clients`` the least
recently used client is forgotten. The order of ``clients`` is part of the replicated state: snapshots keep it.
"""

from __future__ import annotations

import msgspec

from feitian.coord.core.results import StoredResult
from feitian.errors import InvalidArgumentError

__all__ = ["ClientRecord", "DedupeTable", "StoredEntry", "client_key"]


class StoredEntry(msgspec.Struct, frozen=True, array_like=True, gc=False):
    session_id: int  # the live session the write was made under (0: none)
    result: StoredResult
    fingerprint: int = 0  # of the request (crc32 of its command): a retry must carry the same one


class ClientRecord(msgspec.Struct, kw_only=True):
    client_id: str
    principal: str = ""
    floor: int = 0  # every sequence number <= floor is forgotten
    results: dict[int, StoredEntry] = msgspec.field(default_factory=dict)

    @property
    def key(self) -> str:
        return client_key(self.principal, self.client_id)

    def sessions(self) -> set[int]:
        return {e.session_id for e in self.results.values() if e.session_id}


def client_key(principal: str, client_id: str) -> str:
    """The table's key of a client: its id within its principal's."""
    return f"{principal}\x00{client_id}"


class DedupeTable:
    def __init__(self, window: int, max_clients: int) -> None:
        self.window = window
        self.max_clients = max_clients
        self.clients: dict[str, ClientRecord] = {}  # by client_key, least recently used first
        self.by_session: dict[int, set[str]] = {}  # session -> keys of clients holding results written under it

    def __len__(self) -> int:
        return len(self.clients)

    def lookup(self, op: str, principal: str, client_id: str, seq: int, fingerprint: int) -> StoredResult | None:
        """The stored result of (client, seq), None for a new request; InvalidArgumentError when too old, or when
        that sequence number was used for another request."""
        record = self.clients.get(client_key(principal, client_id))
        if record is None:
            return None
        stored = record.results.get(seq)
        if stored is not None:
            if stored.fingerprint != fingerprint:
                raise InvalidArgumentError(
                    f"{op}: request {seq} of client {client_id} was already used for a different request",
                    hint="a retry must repeat its request exactly; a new request needs a new request_seq",
                    client_id=client_id,
                    request_seq=seq,
                )
            self._touch(record)
            return stored.result
        if seq <= record.floor:
            raise InvalidArgumentError(
                f"{op}: request {seq} of client {client_id} is older than the last {self.window} writes "
                "remembered; its outcome is unknown",
                hint=f"keep at most {self.window} writes in flight per client",
                client_id=client_id,
                request_seq=seq,
            )
        return None

    def remember(
        self, principal: str, client_id: str, seq: int, session_id: int, result: StoredResult, fingerprint: int
    ) -> None:
        """Store ``result`` of a write made under ``session_id`` (0: none; the session must be alive)."""
        key = client_key(principal, client_id)
        record = self.clients.get(key)
        if record is None:
            record = ClientRecord(client_id=client_id, principal=principal)
            self.clients[key] = record
        else:
            self._touch(record)
        record.results[seq] = StoredEntry(session_id, result, fingerprint)
        if session_id:
            self.by_session.setdefault(session_id, set()).add(key)
        while len(record.results) > self.window:
            oldest = min(record.results)
            evicted = record.results.pop(oldest)
            record.floor = max(record.floor, oldest)
            if evicted.session_id and evicted.session_id not in record.sessions():
                self._unbind(evicted.session_id, key)
        while len(self.clients) > self.max_clients:
            dropped = self.clients.pop(next(iter(self.clients)))
            for session in dropped.sessions():
                self._unbind(session, dropped.key)

    def forget_session(self, session_id: int) -> None:
        for key in sorted(self.by_session.pop(session_id, ())):
            record = self.clients[key]
            record.results = {s: e for s, e in record.results.items() if e.session_id != session_id}
            if not record.results:
                del self.clients[key]

    def restore(self, records: list[ClientRecord]) -> None:
        self.clients = {r.key: r for r in records}
        self.by_session = {}
        for record in records:
            for session in record.sessions():
                self.by_session.setdefault(session, set()).add(record.key)

    def _touch(self, record: ClientRecord) -> None:
        key = record.key
        del self.clients[key]
        self.clients[key] = record

    def _unbind(self, session_id: int, key: str) -> None:
        bound = self.by_session.get(session_id)
        if bound is not None:
            bound.discard(key)
            if not bound:
                del self.by_session[session_id]
