"""The only part of feitian that touches the OS: durable files, the write-ahead log, Raft storage.

Re-exports are resolved lazily so that ``python -m feitian.runtime.wal bench`` does not import the module it
is about to run.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from feitian.base.lazy import lazy_attributes

if TYPE_CHECKING:
    from feitian.runtime.raft_store import RaftState, RaftStore
    from feitian.runtime.wal import WAL, Preallocate
    from feitian.runtime.wal_async import GroupCommitWAL
    from feitian.runtime.wal_format import Record
    from feitian.runtime.wal_recovery import Recovered, RecoveryReport

__all__ = [
    "WAL",
    "GroupCommitWAL",
    "Preallocate",
    "RaftState",
    "RaftStore",
    "Record",
    "Recovered",
    "RecoveryReport",
]

_HOMES = {
    "WAL": "feitian.runtime.wal",
    "Preallocate": "feitian.runtime.wal",
    "Recovered": "feitian.runtime.wal_recovery",
    "RecoveryReport": "feitian.runtime.wal_recovery",
    "GroupCommitWAL": "feitian.runtime.wal_async",
    "Record": "feitian.runtime.wal_format",
    "RaftState": "feitian.runtime.raft_store",
    "RaftStore": "feitian.runtime.raft_store",
}


__getattr__ = lazy_attributes(__name__, _HOMES)
