"""What the coordination core returns: node stats, results of writes, results of reads.

Write results are tagged structs (``result`` field) so a stored result, or an error as an :class:`ErrorValue`,
round-trips through msgpack in snapshots and can travel on the wire unchanged.
"""

from __future__ import annotations

import msgspec

from feitian.errors import FeitianError
from feitian.rpc.core import ErrorInfo

__all__ = [
    "BatchApplied",
    "Checked",
    "Created",
    "Deleted",
    "ErrorValue",
    "ExistsResult",
    "GetResult",
    "LeaderTermStarted",
    "ListResult",
    "NodeStat",
    "OpResult",
    "SelectResult",
    "SessionClosed",
    "SessionCreated",
    "SessionInfo",
    "SessionsExpired",
    "StatResult",
    "StoredResult",
    "TxnCommitted",
    "Updated",
    "WriteResult",
    "stored_result",
]


class NodeStat(msgspec.Struct, frozen=True, kw_only=True, gc=False):
    """A node's metadata. Revisions are global (one per tree-changing command); ``version`` counts this node's
    values (1 when created, +1 per set). ``ephemeral_owner`` is the owning session (0: persistent)."""

    path: str
    creator: str  # the principal that created the node ("" for the root)
    create_revision: int
    mod_revision: int
    version: int
    ephemeral_owner: int = 0
    value_bytes: int = 0  # files
    children: int = 0  # directories: number of entries
    sequence: int = 0  # directories: the next sequential suffix

    @property
    def is_directory(self) -> bool:
        return self.path.endswith("/")


# -- results of writes ------------------------------------------------------------------------------------------


class Created(msgspec.Struct, frozen=True, kw_only=True, gc=False, tag="created", tag_field="result"):
    """``stat.path`` is the real path (with the suffix of a sequential node); ``revision`` is the new revision,
    which is also ``stat.create_revision`` — unique per created node, so usable as a fencing token."""

    revision: int
    stat: NodeStat
    parents: tuple[str, ...] = ()  # directories created on the way (create with parents=True)


class Updated(msgspec.Struct, frozen=True, kw_only=True, gc=False, tag="updated", tag_field="result"):
    revision: int
    stat: NodeStat


class Deleted(msgspec.Struct, frozen=True, kw_only=True, gc=False, tag="deleted", tag_field="result"):
    revision: int
    stat: NodeStat  # the node as it was just before the delete


class Checked(msgspec.Struct, frozen=True, kw_only=True, gc=False, tag="checked", tag_field="result"):
    path: str


OpResult = Created | Updated | Deleted | Checked


class TxnCommitted(msgspec.Struct, frozen=True, kw_only=True, gc=False, tag="txn", tag_field="result"):
    """Every operation applied, in order, at one ``revision`` (the current one if only checks ran)."""

    revision: int
    results: tuple[OpResult, ...]


class SessionCreated(msgspec.Struct, frozen=True, kw_only=True, tag="session_created", tag_field="result"):
    session_id: int
    ttl_ms: int


class SessionClosed(msgspec.Struct, frozen=True, kw_only=True, tag="session_closed", tag_field="result"):
    """``existed`` is False when the session was already gone (closing is idempotent)."""

    session_id: int
    existed: bool
    revision: int
    deleted: tuple[str, ...] = ()  # its ephemeral nodes, all deleted at ``revision``


class SessionsExpired(msgspec.Struct, frozen=True, kw_only=True, tag="sessions_expired", tag_field="result"):
    """``session_ids`` lists the sessions that existed and are now gone; ``stale`` is True when the command
    came from a leader of an older epoch and was ignored."""

    revision: int
    session_ids: tuple[int, ...]
    deleted: tuple[str, ...] = ()
    stale: bool = False


class LeaderTermStarted(msgspec.Struct, frozen=True, kw_only=True, tag="leader_term", tag_field="result"):
    epoch: int  # the leader epoch now in force (the command's, unless an older one was proposed late)


class BatchApplied(msgspec.Struct, frozen=True, kw_only=True, tag="batch", tag_field="result"):
    """A write batch applied; each write's own result is in ``Applied.parts`` (never stored for dedupe)."""

    revision: int
    count: int


class ErrorValue(ErrorInfo, frozen=True, kw_only=True, tag="error", tag_field="result"):
    """:class:`~feitian.rpc.core.messages.ErrorInfo` as a write result: the same fields and decoding, tagged like
    the other results (``result: "error"``) so the dedupe table, snapshots and ``WriteBatchReply`` can hold it in
    the :data:`StoredResult` union. Encoded as before this class became an ErrorInfo, plus ``retryable`` (absent
    in results stored by older code, which still decode)."""

    @classmethod
    def from_error(cls, error: FeitianError) -> ErrorValue:
        # Every field is kept (not only the wire types ErrorInfo.from_exception keeps), exactly as stored so far:
        # a replayed write must answer what it answered the first time.
        return cls(
            code=error.wire_code,
            message=error.message,
            hint=error.hint,
            fields=dict(error.fields),
            retryable=error.retryable,
        )

    def to_error(self) -> FeitianError:
        return self.to_exception()


WriteResult = (
    Created
    | Updated
    | Deleted
    | Checked
    | TxnCommitted
    | SessionCreated
    | SessionClosed
    | SessionsExpired
    | LeaderTermStarted
    | BatchApplied
)
StoredResult = WriteResult | ErrorValue


def stored_result(outcome: WriteResult | FeitianError) -> StoredResult:
    """A write's outcome as data (an error becomes an :class:`ErrorValue`): what the dedupe table keeps and a
    write batch's reply carries."""
    return ErrorValue.from_error(outcome) if isinstance(outcome, FeitianError) else outcome


# -- results of reads (each carries the revision the read saw) --------------------------------------------------


class GetResult(msgspec.Struct, frozen=True, kw_only=True):
    stat: NodeStat
    value: bytes
    revision: int


class StatResult(msgspec.Struct, frozen=True, kw_only=True):
    stat: NodeStat
    revision: int


class ExistsResult(msgspec.Struct, frozen=True, kw_only=True):
    stat: NodeStat | None
    revision: int

    @property
    def exists(self) -> bool:
        return self.stat is not None


class ListResult(msgspec.Struct, frozen=True, kw_only=True):
    """A directory's entries sorted by name (sequential names therefore in creation order); ``more`` is True when
    the page was cut at ``limit`` — ask again with ``start_after`` = the last child's path."""

    directory: NodeStat
    children: tuple[NodeStat, ...]
    revision: int
    more: bool = False


class SelectResult(msgspec.Struct, frozen=True, kw_only=True):
    """The current nodes a selector covers, in path order (what a watcher reloads after ``Compacted``)."""

    nodes: tuple[NodeStat, ...]
    revision: int
    more: bool = False


class SessionInfo(msgspec.Struct, frozen=True, kw_only=True):
    session_id: int
    ttl_ms: int
    owner: str
    ephemerals: tuple[str, ...]
