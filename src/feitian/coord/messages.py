"""Nuwa's Kuafu requests and replies (``coord.*`` methods) and the rule each method declares.

Every request names the path it touches; the service checks the caller's capabilities on ``coord:<path>``
before the request is queued (``requires(...)`` below): reads need ``read``, creates ``create``, sets
``write``, deletes ``delete``. A transaction needs, for each of its operations, the right that operation
would need alone (``read`` for a check). Sessions need an authenticated caller only (a session grants nothing by
itself; the state machine lets only its owner use it). Snapshots need ``admin`` on ``coord:/``.

Writes carry ``client_id`` + ``request_seq`` so that a retry after a lost reply or a leader failover returns
the first result instead of applying twice, and ``session_id`` when made under a session (ephemeral nodes).
Replies reuse the core's result types (``feitian.coord.core.results``).
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any, ClassVar

import msgspec

from feitian.coord.core import (
    CheckOp,
    Compacted,
    Created,
    CreateOp,
    Deleted,
    DeleteOp,
    Event,
    ExistsResult,
    GetResult,
    NodeStat,
    Op,
    Selector,
    SelectResult,
    SessionClosed,
    SessionCreated,
    SessionInfo,
    SetOp,
    StatResult,
    TxnCommitted,
    Updated,
)
from feitian.coord.core.results import StoredResult
from feitian.replica import ReplicaStats
from feitian.rpc import Request
from feitian.security.core import MethodRule, Right, requires, requires_authentication, requires_each

__all__ = [
    "CloseSessionRequest",
    "CoordStatus",
    "CreateRequest",
    "CreateSessionRequest",
    "DeleteRequest",
    "ExistsRequest",
    "GetRequest",
    "GetSessionRequest",
    "HeartbeatReply",
    "HeartbeatRequest",
    "ListReply",
    "ListRequest",
    "SaveSnapshotRequest",
    "SelectRequest",
    "SetRequest",
    "SnapshotInfo",
    "StatRequest",
    "StatusRequest",
    "TxnRequest",
    "WatchReply",
    "WatchRequest",
    "WriteBatchReply",
    "WriteBatchRequest",
    "WriteRequest",
]


# -- reads ------------------------------------------------------------------------------------------------------
# ``stale=True``: answer from this replica's state without a read barrier (cheaper; may miss recent writes).


class GetRequest(Request[GetResult], frozen=True, tag="coord.Get"):
    idempotent: ClassVar[bool] = True
    path: str
    stale: bool = False


class StatRequest(Request[StatResult], frozen=True, tag="coord.Stat"):
    idempotent: ClassVar[bool] = True
    path: str
    stale: bool = False


class ExistsRequest(Request[ExistsResult], frozen=True, tag="coord.Exists"):
    idempotent: ClassVar[bool] = True
    path: str
    stale: bool = False


class ListReply(msgspec.Struct, frozen=True, kw_only=True):
    """A directory's entries sorted by name; with ``values`` requested, ``values[i]`` is the value of
    ``children[i]`` (b"" for a directory), read at the same revision."""

    directory: NodeStat
    children: tuple[NodeStat, ...]
    revision: int
    more: bool = False
    values: tuple[bytes, ...] = ()

    @property
    def names(self) -> list[str]:
        return [c.path[len(self.directory.path) :] for c in self.children]


class ListRequest(Request[ListReply], frozen=True, tag="coord.List"):
    idempotent: ClassVar[bool] = True
    path: str
    start_after: str = ""
    limit: int = 0  # 0: the service's page size (max_list_children)
    values: bool = False
    stale: bool = False


class SelectRequest(Request[SelectResult], frozen=True, tag="coord.Select"):
    idempotent: ClassVar[bool] = True
    selector: Selector
    start_after: str = ""
    limit: int = 0
    stale: bool = False


# -- writes -----------------------------------------------------------------------------------------------------


class CreateRequest(Request[Created], frozen=True, tag="coord.Create", kw_only=True):
    path: str
    value: bytes = b""
    ephemeral: bool = False
    sequential: bool = False
    parents: bool = False
    client_id: str = ""
    request_seq: int = 0
    session_id: int = 0


class SetRequest(Request[Updated], frozen=True, tag="coord.Set", kw_only=True):
    path: str
    value: bytes
    expected_version: int | None = None
    client_id: str = ""
    request_seq: int = 0
    session_id: int = 0


class DeleteRequest(Request[Deleted], frozen=True, tag="coord.Delete", kw_only=True):
    path: str
    expected_version: int | None = None
    client_id: str = ""
    request_seq: int = 0
    session_id: int = 0


class TxnRequest(Request[TxnCommitted], frozen=True, tag="coord.Txn", kw_only=True):
    ops: tuple[Op, ...]
    client_id: str = ""
    request_seq: int = 0
    session_id: int = 0


WriteRequest = CreateRequest | SetRequest | DeleteRequest | TxnRequest


class WriteBatchReply(msgspec.Struct, frozen=True, kw_only=True):
    """``results[i]`` answers ``writes[i]``: its result, or an :class:`ErrorValue` when that write failed."""

    results: tuple[StoredResult, ...]


class WriteBatchRequest(Request[WriteBatchReply], frozen=True, tag="coord.WriteBatch", kw_only=True):
    """Independent writes sent together (a client's concurrent writes): one request, one log entry, one reply.
    Each applies as if sent alone, with its own ``client_id``/``request_seq`` deduplication and its own result;
    none depends on another (use a transaction for all-or-nothing). The batch is authorized exactly when every
    write in it would be alone; at most ``max_batch_writes`` writes of at most ``max_batch_bytes`` in all."""

    writes: tuple[WriteRequest, ...]


# -- sessions ---------------------------------------------------------------------------------------------------


class CreateSessionRequest(Request[SessionCreated], frozen=True, tag="coord.CreateSession", kw_only=True):
    ttl_ms: int
    client_id: str = ""
    request_seq: int = 0


class HeartbeatReply(msgspec.Struct, frozen=True, kw_only=True):
    session_id: int
    ttl_ms: int
    epoch: int  # the leader's term: heartbeats are answered by the leader only


class HeartbeatRequest(Request[HeartbeatReply], frozen=True, tag="coord.Heartbeat"):
    """Keep a session alive. Answered by the leader only, after a leadership confirmation (ReadIndex) that
    began after the heartbeat arrived; NotLeaderError (with ``leader_hint``) elsewhere."""

    session_id: int


class CloseSessionRequest(Request[SessionClosed], frozen=True, tag="coord.CloseSession", kw_only=True):
    session_id: int
    client_id: str = ""
    request_seq: int = 0


class GetSessionRequest(Request[SessionInfo], frozen=True, tag="coord.GetSession"):
    idempotent: ClassVar[bool] = True
    session_id: int
    stale: bool = False


# -- subscriptions ----------------------------------------------------------------------------------------------


class WatchReply(msgspec.Struct, frozen=True, kw_only=True):
    """Events matching the selector with revisions in ``(since, through_revision]`` (whole revisions), or
    ``compacted`` when events after ``since`` are no longer kept (reload, then resume from the reload's
    revision). ``revision`` is the replica's current revision."""

    events: tuple[Event, ...] = ()
    through_revision: int
    more: bool = False
    compacted: Compacted | None = None
    revision: int = 0


class WatchRequest(Request[WatchReply], frozen=True, tag="coord.Watch"):
    """Long poll: after a read barrier, answer at once if events after ``since`` match, else wait up to
    ``wait_ms`` for one. ``since`` -1: from the replica's current revision (an empty reply naming it)."""

    idempotent: ClassVar[bool] = True
    selector: Selector
    since: int
    wait_ms: int = 10_000


# -- operations -------------------------------------------------------------------------------------------------


class CoordStatus(msgspec.Struct, frozen=True, kw_only=True):
    replica: ReplicaStats
    revision: int
    nodes: int
    sessions: int
    leader_epoch: int
    tracking: bool  # this replica's SessionTracker is active (it is the leader and has taken over)
    tracked_sessions: int
    history_events: int
    compacted_through: int


class StatusRequest(Request[CoordStatus], frozen=True, tag="coord.Status"):
    idempotent: ClassVar[bool] = True


class SnapshotInfo(msgspec.Struct, frozen=True, kw_only=True):
    """The reply's payload is the snapshot (``CoordStateMachine.snapshot()`` bytes)."""

    revision: int
    applied_index: int
    size_bytes: int


class SaveSnapshotRequest(Request[SnapshotInfo], frozen=True, tag="coord.SaveSnapshot"):
    idempotent: ClassVar[bool] = True


# -- rules ------------------------------------------------------------------------------------------------------


def _resource(path: str) -> str:
    return f"coord:{path}"


READ_RULE: MethodRule[Any] = requires(Right.READ, lambda r: _resource(r.path))
SELECT_RULE: MethodRule[Any] = requires(Right.READ, lambda r: _resource(r.selector.path))
CREATE_RULE: MethodRule[Any] = requires(Right.CREATE, lambda r: _resource(r.path))
SET_RULE: MethodRule[Any] = requires(Right.WRITE, lambda r: _resource(r.path))
DELETE_RULE: MethodRule[Any] = requires(Right.DELETE, lambda r: _resource(r.path))


def _by_type(rules: dict[type, MethodRule[Any]], items: Iterable[Any]) -> list[tuple[MethodRule[Any], Any]]:
    """Each item with the rule of its type: what a request carrying several needs (``requires_each``)."""
    return [(rules[type(item)], item) for item in items]


# A transaction needs, for each operation, the right it would need alone (read for a check).
_OP_RULES: dict[type, MethodRule[Any]] = {
    CreateOp: CREATE_RULE,
    SetOp: SET_RULE,
    DeleteOp: DELETE_RULE,
    CheckOp: READ_RULE,
}
TXN_RULE: MethodRule[Any] = requires_each(lambda r: _by_type(_OP_RULES, r.ops))
SESSION_RULE: MethodRule[Any] = requires_authentication()


_WRITE_RULES: dict[type, MethodRule[Any]] = {
    CreateRequest: CREATE_RULE,
    SetRequest: SET_RULE,
    DeleteRequest: DELETE_RULE,
    TxnRequest: TXN_RULE,
}
BATCH_RULE: MethodRule[Any] = requires_each(lambda r: _by_type(_WRITE_RULES, r.writes))
STATUS_RULE: MethodRule[Any] = requires(Right.READ, "coord:/")
SNAPSHOT_RULE: MethodRule[Any] = requires(Right.ADMIN, "coord:/")
