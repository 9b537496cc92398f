"""Nuwa's pure core: the coordination state machine, its commands, sessions, events and timing.

No asyncio, sockets, clocks, randomness or files: time is an argument (``now_ns``). One asyncio task owns a
:class:`CoordStateMachine` through the replica driver (``feitian.replica``), which applies committed log entries.

The state machine (give it to ``Replica`` as its ``StateMachine``)::

    sm = CoordStateMachine(limits)                # every replica of a quorum: the same CoordLimits
    result = sm.apply(index, encode_command(cmd)) # a write result, or a FeitianError *value* (never raises)
    sm.last_applied                               # Applied: result, events, sessions started/ended, duplicate
    sm.snapshot() / sm.restore(data)              # everything, msgpack, deterministic bytes

Writes (log commands, ``commands.py``), each with a header ``principal`` (the authenticated caller; recorded as
a node's creator and a session's owner), ``client_id`` + ``request_seq`` (a retry returns the first result),
``session_id`` (0: none; else the session must be alive and owned by the principal)::

    CreateNode(path, value, ephemeral, sequential, parents)  -> Created(revision, stat, parents)
    SetNode(path, value, expected_version)                   -> Updated(revision, stat)
    DeleteNode(path, expected_version)                       -> Deleted(revision, stat)
    Transaction(ops=(CreateOp|SetOp|DeleteOp|CheckOp, ...)) -> TxnCommitted(revision, results)  all or nothing
    CreateSession(ttl_ms)                                    -> SessionCreated(session_id, ttl_ms)
    CloseSession(session_id in the header)                   -> SessionClosed(session_id, existed, revision, deleted)
    ExpireSessions(session_ids, epoch)   (leader only)       -> SessionsExpired(revision, session_ids, deleted)
    StartLeaderTerm(epoch)               (leader only)       -> LeaderTermStarted(epoch)

Errors are returned, not raised: InvalidArgumentError / MessageTooLargeError (bad path, value over 1 MB, ...),
NotFoundError, AlreadyExistsError (``create /locks/job-17: node already exists (owner session 0x1f)``),
ConflictError (``expected``/``found`` fields; ``op_index`` inside a transaction), SessionExpiredError,
PermissionDeniedError (a session used by another principal), OverloadedError (a state bound is full).
The service calls ``validate_command(cmd, limits)`` first to refuse bad requests without a log entry, and
authorizes each path against the caller's capabilities (``coord:<path>``) itself.

Reads are plain methods, linearizable after the driver's ``read_barrier()``; each returns its ``revision``::

    sm.get(path) -> GetResult          sm.stat(path) -> StatResult      sm.exists(path) -> ExistsResult
    sm.list(dir, start_after=, limit=) -> ListResult (children's stats, sorted by name)
    sm.select(selector, start_after=, limit=) -> SelectResult (the current nodes a selector covers)
    sm.events_since(revision, selector, limit=) -> EventBatch | Compacted
    sm.session(id) -> SessionInfo      sm.session_ttls() -> [(id, ttl_ms)]

Revisions: +1 per command that changes the tree (a transaction, a session's expiry: one revision, one event per
node). Commands that change nothing (failed, check-only, session bookkeeping) take no revision, so every
revision has events and a watcher resumes with ``events_since(last_revision)``: all missed events or
``Compacted`` (reload with ``select``, resume from its revision). Locks take ``Created.stat.create_revision``
as a fencing token and guard writes with ``CheckOp(path, create_revision=token)``.

Sessions and timing (``lease.py``, ``tracker.py``; full contract in ``docs/coord.md``): the leader's
:class:`SessionTracker` keeps deadlines (last heartbeat + ttl; a full ttl after a leader change) and proposes
``ExpireSessions``; the client's :class:`ClientLease` counts from the *send* time of its last acknowledged
heartbeat: jeopardy after ttl/3, lost after 2/3 ttl, so it always gives up before the server expires it.
:class:`SubscriptionIndex` maps events to subscribers for the service and proxies.
"""

from feitian.coord.core.commands import (
    Batch,
    CheckOp,
    CloseSession,
    Command,
    CreateNode,
    CreateOp,
    CreateSession,
    DeleteNode,
    DeleteOp,
    ExpireSessions,
    Op,
    SetNode,
    SetOp,
    StartLeaderTerm,
    Transaction,
    decode_command,
    encode_command,
    validate_command,
)
from feitian.coord.core.events import Compacted, Event, EventBatch, EventHistory, EventKind, Selector, SelectorKind
from feitian.coord.core.lease import DEFAULT_SESSION_TTL_MS, ClientLease, LeaseState, SessionTiming
from feitian.coord.core.limits import DEFAULT_LIMITS, CoordLimits
from feitian.coord.core.paths import MAX_SEQUENCE, ROOT, SEQUENCE_DIGITS, parent_of, validate_path
from feitian.coord.core.results import (
    BatchApplied,
    Checked,
    Created,
    Deleted,
    ErrorValue,
    ExistsResult,
    GetResult,
    LeaderTermStarted,
    ListResult,
    NodeStat,
    OpResult,
    SelectResult,
    SessionClosed,
    SessionCreated,
    SessionInfo,
    SessionsExpired,
    StatResult,
    TxnCommitted,
    Updated,
    WriteResult,
)
from feitian.coord.core.state import Applied, CoordStateMachine
from feitian.coord.core.subscriptions import SubscriptionIndex
from feitian.coord.core.tracker import SessionTracker

__all__ = [
    "DEFAULT_LIMITS",
    "DEFAULT_SESSION_TTL_MS",
    "MAX_SEQUENCE",
    "ROOT",
    "SEQUENCE_DIGITS",
    "Applied",
    "Batch",
    "BatchApplied",
    "CheckOp",
    "Checked",
    "ClientLease",
    "CloseSession",
    "Command",
    "Compacted",
    "CoordLimits",
    "CoordStateMachine",
    "CreateNode",
    "CreateOp",
    "CreateSession",
    "Created",
    "DeleteNode",
    "DeleteOp",
    "Deleted",
    "ErrorValue",
    "Event",
    "EventBatch",
    "EventHistory",
    "EventKind",
    "ExistsResult",
    "ExpireSessions",
    "GetResult",
    "LeaderTermStarted",
    "LeaseState",
    "ListResult",
    "NodeStat",
    "Op",
    "OpResult",
    "SelectResult",
    "Selector",
    "SelectorKind",
    "SessionClosed",
    "SessionCreated",
    "SessionInfo",
    "SessionTiming",
    "SessionTracker",
    "SessionsExpired",
    "SetNode",
    "SetOp",
    "StartLeaderTerm",
    "StatResult",
    "SubscriptionIndex",
    "Transaction",
    "TxnCommitted",
    "Updated",
    "WriteResult",
    "decode_command",
    "encode_command",
    "parent_of",
    "validate_command",
    "validate_path",
]
