"""The replicated-service kit: how every replicated service of feitian is built (ARCHITECTURE.md, "The
replicated-service kit").

* :class:`Replica` — the one Raft driver: a consensus core, a durable log and a state machine.
* :class:`ReplicatedService` — the base of a service: owns a state machine on a :class:`Replica`; ``propose(ctx,
  command)`` honours the caller's deadline and refuses on a follower with ``NotLeaderError(leader_hint=...)``.
* :class:`LeaderDuties` — a start-of-term entry, a ``ready`` flag, and leader-only tasks stopped on step-down.
* :class:`DedupeTable` (``feitian.replica.core``, pure) — exactly-once retries by ``client_id`` + ``request_seq``.
* :class:`Router` — the one client-side way to reach the leader: follows hints, backs off, retries by one set
  of rules, honours the caller's deadline and reports an outcome that may be unknown.
"""

from typing import TYPE_CHECKING

from feitian.base.lazy import lazy_attributes
from feitian.replica.core import (
    ClientRecord,
    DedupeTable,
    ReplyCodec,
    RequestKey,
    StoredEntry,
    StoredReply,
    client_key,
    request_key,
)
from feitian.replica.driver import Replica, ReplicaConfig, ReplicaStats, StateMachine
from feitian.replica.duties import LeaderDuties
from feitian.replica.router import Router
from feitian.replica.service import ReplicatedService, remaining_s

if TYPE_CHECKING:
    from feitian.replica.cycle import ReadyCycle, apply_entry, carry_out
    from feitian.replica.options import ReplicaOptions
    from feitian.replica.status import add_replica_stats

# Exported on first use, for other components (they import only through this root: ARCHITECTURE.md, Layers).
_LAZY = {
    "ReadyCycle": "feitian.replica.cycle",
    "ReplicaOptions": "feitian.replica.options",
    "add_replica_stats": "feitian.replica.status",
    "apply_entry": "feitian.replica.cycle",
    "carry_out": "feitian.replica.cycle",
}


__getattr__ = lazy_attributes(__name__, _LAZY)


__all__ = [
    "ClientRecord",
    "DedupeTable",
    "LeaderDuties",
    "ReadyCycle",
    "Replica",
    "ReplicaConfig",
    "ReplicaOptions",
    "ReplicaStats",
    "ReplicatedService",
    "ReplyCodec",
    "RequestKey",
    "Router",
    "StateMachine",
    "StoredEntry",
    "StoredReply",
    "add_replica_stats",
    "apply_entry",
    "carry_out",
    "client_key",
    "remaining_s",
    "request_key",
]
