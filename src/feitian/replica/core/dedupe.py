"""Exactly-once retries for any replicated service: results of recent writes per client, so a retried write
returns its first result instead of applying twice. Pure: it lives in a state machine and moves with its snapshots.

A client tags each write with its ``client_id`` and an increasing ``request_seq``. The table remembers the
results (errors included) of the last ``dedupe_window`` sequence numbers per client; a retry of one of them gets
the stored result. A client is a (principal, client_id) pair: another principal using the same client id is
another client and never sees these results. Each result keeps a fingerprint of its request: a sequence number
reused for a different request is refused, not answered with the other request's result. A retry older than
the window cannot be answered and is refused (its outcome is unknown), so a client keeps at most
``dedupe_window`` writes in flight.

Each remembered result carries the session its write was made under. When a session ends, the results written
under it are forgotten (a retry of such a write meets the dead session and fails with SessionExpiredError, so it
cannot apply twice); a client left with no results is forgotten (a service without sessions passes 0). Beyond
``max_clients`` the least recently used client is forgotten. The order of ``clients`` is part of the replicated
state: snapshots keep it (``list(table.clients.values())``, typed ``list[ClientRecord[R]]`` with the service's
result type ``R``; ``restore`` takes them back).

A state machine uses it in ``apply``, for a command carrying ``client_id`` and ``request_seq``::

    stored = table.lookup(op, principal, client_id, seq, fingerprint)   # raises on a reused or too old seq
    if stored is not None:
        return stored                                                   # the first attempt's result
    result = ...apply the command...
    table.remember(principal, client_id, seq, session_id, result_as_data, fingerprint)

Results are stored as data (a service turns an error into a value first: they go into snapshots).
"""

from __future__ import annotations

import heapq
import zlib
from collections.abc import Callable, Iterable
from typing import Any, Generic, TypeVar

import msgspec

from feitian.errors import FeitianError, InternalError, InvalidArgumentError, error_class_for_code

__all__ = [
    "ClientRecord",
    "DedupeTable",
    "ReplyCodec",
    "RequestKey",
    "StoredEntry",
    "StoredReply",
    "apply_once",
    "client_key",
    "request_key",
]

R = TypeVar("R")  # a service's stored result: plain data (msgspec-encodable), errors included as values


class StoredEntry(msgspec.Struct, Generic[R], frozen=True, array_like=True, gc=False):
    session_id: int  # the live session the write was made under (0: none)
    result: R
    fingerprint: int = 0  # of the request (crc32 of its command): a retry must carry the same one


class ClientRecord(msgspec.Struct, Generic[R], kw_only=True):
    client_id: str
    principal: str = ""
    floor: int = 0  # every sequence number <= floor is forgotten
    results: dict[int, StoredEntry[R]] = msgspec.field(default_factory=dict)

    @property
    def key(self) -> str:
        return client_key(self.principal, self.client_id)

    def sessions(self) -> set[int]:
        return {e.session_id for e in self.results.values() if e.session_id}


def client_key(principal: str, client_id: str) -> str:
    """The table's key of a client: its id within its principal's."""
    return f"{principal}\x00{client_id}"


class RequestKey(msgspec.Struct, frozen=True, array_like=True, gc=False):
    """Which write of which client a logged command is: a service puts it in the command it proposes (the
    principal is the authenticated caller's, never the client's say)."""

    principal: str
    client_id: str
    seq: int
    fingerprint: int  # of the client's request, so a retry must repeat it exactly


def request_key(principal: str, client_id: str, seq: int, request: Any) -> RequestKey | None:
    """The key of a client's request (None when it carries no ``client_id``: a client that does not retry)."""
    if not client_id:
        return None
    return RequestKey(principal, client_id, seq, zlib.crc32(msgspec.msgpack.encode(request)))


class StoredReply(msgspec.Struct, frozen=True, array_like=True, gc=False):
    """A result as data, for a service whose results are not one tagged union: its type's name and msgpack."""

    kind: str
    data: bytes


class _StoredError(msgspec.Struct, frozen=True, array_like=True):
    code: str
    message: str
    hint: str | None
    fields: dict[str, Any]


_WIRE_VALUES = (str, int, float, bool, type(None), list, dict)


class ReplyCodec:
    """Turns a service's results (the ``types`` it returns, or a FeitianError) into :class:`StoredReply` and
    back."""

    def __init__(self, types: Iterable[type[Any]]) -> None:
        self.types = {t.__name__: t for t in types}

    def store(self, result: Any) -> StoredReply:
        if isinstance(result, FeitianError):
            fields = {k: v for k, v in result.fields.items() if isinstance(v, _WIRE_VALUES)}
            error = _StoredError(result.code, result.message, result.hint, fields)
            return StoredReply("error", msgspec.msgpack.encode(error))
        kind = type(result).__name__
        if kind not in self.types:
            raise InternalError(f"dedupe: a result of type {kind} cannot be stored (not among {sorted(self.types)})")
        return StoredReply(kind, msgspec.msgpack.encode(result))

    def load(self, stored: StoredReply) -> Any:
        """The stored result (an error is returned as an exception value, not raised)."""
        if stored.kind == "error":
            e = msgspec.msgpack.decode(stored.data, type=_StoredError)
            return error_class_for_code(e.code)(e.message, hint=e.hint, **e.fields)
        return msgspec.msgpack.decode(stored.data, type=self.types[stored.kind])


class DedupeTable(Generic[R]):
    def __init__(self, window: int, max_clients: int) -> None:
        if window < 1 or max_clients < 1:
            raise InvalidArgumentError(f"dedupe table: window ({window}) and max_clients ({max_clients}) must be >= 1")
        self.window = window
        self.max_clients = max_clients
        self.clients: dict[str, ClientRecord[R]] = {}  # by client_key, least recently used first
        self.by_session: dict[int, set[str]] = {}  # session -> keys of clients holding results written under it
        # client key -> a min-heap of its stored sequence numbers (built at its first eviction; entries no longer
        # stored are skipped when they come up): evicting the oldest is O(log window), not a scan of the window
        self._seqs: dict[str, list[int]] = {}

    def __len__(self) -> int:
        return len(self.clients)

    def lookup(self, op: str, principal: str, client_id: str, seq: int, fingerprint: int) -> R | None:
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

    def remember(self, principal: str, client_id: str, seq: int, session_id: int, result: R, fingerprint: int) -> None:
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
        heap = self._seqs.get(key)
        if heap is not None:
            heapq.heappush(heap, seq)
        if len(record.results) > self.window:
            if heap is None or len(heap) > 4 * self.window:  # none yet, or mostly forgotten entries
                heap = self._seqs[key] = list(record.results)
                heapq.heapify(heap)
            evicted_sessions: set[int] = set()
            while len(record.results) > self.window:
                oldest = heapq.heappop(heap)
                evicted = record.results.pop(oldest, None)
                if evicted is None:  # forgotten with its session already
                    continue
                record.floor = max(record.floor, oldest)
                if evicted.session_id:
                    evicted_sessions.add(evicted.session_id)
            if evicted_sessions:
                for session in evicted_sessions - record.sessions():
                    self._unbind(session, key)
        while len(self.clients) > self.max_clients:
            dropped = self.clients.pop(next(iter(self.clients)))
            self._seqs.pop(dropped.key, None)
            for session in dropped.sessions():
                self._unbind(session, dropped.key)

    def check(self, op: str, key: RequestKey) -> R | None:
        """:meth:`lookup` by a :class:`RequestKey`."""
        return self.lookup(op, key.principal, key.client_id, key.seq, key.fingerprint)

    def record(self, key: RequestKey, result: R, session_id: int = 0) -> None:
        """:meth:`remember` by a :class:`RequestKey`."""
        self.remember(key.principal, key.client_id, key.seq, session_id, result, key.fingerprint)

    def forget_session(self, session_id: int) -> None:
        for key in sorted(self.by_session.pop(session_id, ())):
            record = self.clients[key]
            record.results = {s: e for s, e in record.results.items() if e.session_id != session_id}
            if not record.results:
                del self.clients[key]
                self._seqs.pop(key, None)

    def restore(self, records: list[ClientRecord[R]]) -> None:
        self.clients = {r.key: r for r in records}
        self.by_session = {}
        self._seqs = {}
        for record in records:
            for session in record.sessions():
                self.by_session.setdefault(session, set()).add(record.key)

    def _touch(self, record: ClientRecord[R]) -> None:
        key = record.key
        del self.clients[key]
        self.clients[key] = record

    def _unbind(self, session_id: int, key: str) -> None:
        bound = self.by_session.get(session_id)
        if bound is not None:
            bound.discard(key)
            if not bound:
                del self.by_session[session_id]


def apply_once(
    table: DedupeTable[StoredReply], codec: ReplyCodec, op: str, key: RequestKey | None, run: Callable[[], Any]
) -> Any:
    """Apply a command at most once per request: ``run()`` unless ``key`` (the request's client_id and seq) was
    applied before, in which case its first result is returned again. A FeitianError raised by ``run`` is the
    command's result (returned, and remembered like any other); a command without a key is just run."""
    if key is None:
        try:
            return run()
        except FeitianError as exc:
            return exc
    try:
        stored = table.check(op, key)
    except FeitianError as exc:  # the seq is older than the table's window, or reused for another request
        return exc
    if stored is not None:
        return codec.load(stored)
    try:
        result = run()
    except FeitianError as exc:
        result = exc
    table.record(key, codec.store(result))
    return result
