"""Nuwa (女娲): the coordination service — a replicated tree with sessions, ephemeral and sequential nodes,
transactions, persistent subscriptions, and the recipes built on them (locks, election, naming, client cache).

``feitian.coord.core`` holds the pure logic every replica runs identically (the tree, sessions, retried-write
results, the event history) and the leader's session timing. ``server/`` runs it as replicas (``feitian node
run coord``, REST included); ``client/`` is the client side, recipes included; ``messages.py`` and ``ops_json.py``
are shared by both sides and import neither; ``role.py`` (the node role) sits above both. This package's root
exports the client. See ``docs/coord.md``.

The async client (public API)::

    from feitian.coord import CoordClient, CheckOp, SetOp, Selector

    nuwa = CoordClient(rpc, replica_addresses, session_ttl_ms=8000)   # rpc: a feitian.rpc.Client
    await nuwa.create(path, value=b"", ephemeral=False, sequential=False, parents=False) -> Created
    await nuwa.get(path, stale=False)              -> GetResult(stat, value, revision)   linearizable unless stale
    await nuwa.set(path, value, version=None)      -> Updated       ConflictError on a version mismatch
    await nuwa.delete(path, version=None)          -> Deleted
    await nuwa.list(dir, values=False, start_after="", limit=0)
                                                   -> ListReply(directory, children, values, revision, more)
    await nuwa.stat(path) -> NodeStat              await nuwa.exists(path) -> ExistsResult(stat | None, revision)
    await nuwa.select(selector)                    -> SelectResult (the nodes a selector covers)
    await nuwa.txn([CheckOp(...), SetOp(...), CreateOp(...), DeleteOp(...)]) -> TxnCommitted   all or nothing
    session = await nuwa.session()                 # this client's session (lease, jeopardy, lost); see Session
    watch = nuwa.watch(path_or_selector, recursive=False, since=None)  # async iterator of Event | Resync
    async with nuwa.lock(path, shared=False) as lease: ...   # lease.token: fencing; cancelled if session lost
    election = nuwa.election(name)                 # campaign(value) / leader() / observe()
    await register(nuwa, service, server, address) # naming; NameCache(nuwa).resolve(service)
    NuwaResolver(nuwa, cluster)                    # Kuafu resolver for nuwa://cluster/service
    await nuwa.close()                             # closes the session: its ephemerals and locks go

:class:`SyncCoordClient` (``sync.py``) wraps it for scripts. Retried writes never apply twice (``client_id`` +
``request_seq``); every error is a ``feitian.errors`` class.
"""

from typing import TYPE_CHECKING

from feitian.base.lazy import lazy_attributes
from feitian.coord.client.client import CoordClient
from feitian.coord.client.recipes import (
    Barrier,
    Election,
    Leader,
    Lock,
    LockLease,
    NameCache,
    Queue,
    Registration,
    register,
)
from feitian.coord.client.resolver import NuwaResolver
from feitian.coord.client.session import Session
from feitian.coord.client.sync import SyncCoordClient
from feitian.coord.client.watch import Resync, Watch
from feitian.coord.core import (
    CheckOp,
    Compacted,
    Created,
    CreateOp,
    Deleted,
    DeleteOp,
    Event,
    EventKind,
    ExistsResult,
    GetResult,
    LeaseState,
    NodeStat,
    Selector,
    SelectResult,
    SetOp,
    TxnCommitted,
    Updated,
)
from feitian.coord.messages import CoordStatus, ListReply

if TYPE_CHECKING:
    from feitian.coord.messages import GetRequest, StatusRequest
    from feitian.coord.ops_json import op_of
    from feitian.coord.role import CoordRole, ServiceRegistration
    from feitian.coord.server.backup import check_snapshot, restore_replica

# Exported on first use, for other components (they import only through this root: ARCHITECTURE.md, Layers).
_LAZY = {
    "CoordRole": "feitian.coord.role",
    "GetRequest": "feitian.coord.messages",
    "ServiceRegistration": "feitian.coord.role",
    "StatusRequest": "feitian.coord.messages",
    "check_snapshot": "feitian.coord.server.backup",
    "op_of": "feitian.coord.ops_json",
    "restore_replica": "feitian.coord.server.backup",
}


__getattr__ = lazy_attributes(__name__, _LAZY)


__all__ = [
    "Barrier",
    "CheckOp",
    "Compacted",
    "CoordClient",
    "CoordRole",
    "CoordStatus",
    "CreateOp",
    "Created",
    "DeleteOp",
    "Deleted",
    "Election",
    "Event",
    "EventKind",
    "ExistsResult",
    "GetRequest",
    "GetResult",
    "Leader",
    "LeaseState",
    "ListReply",
    "Lock",
    "LockLease",
    "NameCache",
    "NodeStat",
    "NuwaResolver",
    "Queue",
    "Registration",
    "Resync",
    "SelectResult",
    "Selector",
    "ServiceRegistration",
    "Session",
    "SetOp",
    "StatusRequest",
    "SyncCoordClient",
    "TxnCommitted",
    "Updated",
    "Watch",
    "check_snapshot",
    "op_of",
    "register",
    "restore_replica",
]
