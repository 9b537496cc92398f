"""Backups of Nuwa: restoring a snapshot into stopped replicas (``feitian coord snapshot restore``).

A backup is the state machine's snapshot (``CoordClient.save_snapshot()`` / ``feitian coord snapshot save``),
taken from a current replica after a read barrier. Restoring is done offline, like etcd's: with the replicas
stopped, each replica's Raft store is replaced by a new one whose only content is that snapshot (at index 1, with
the founding membership), so every replica starts from the same state and elects a leader as usual. The old store
is kept beside it as ``raft.before-restore-<time>``.

The Raft term starts at the snapshot's leader epoch, so the next leader's epoch is newer than any recorded in
the snapshot and its session expiries are not taken for a stale leader's. Sessions in the snapshot get a full TTL
from the new leader's take-over and then expire (their clients are gone), removing their ephemeral nodes.
"""

from __future__ import annotations

import os
import time

from feitian.consensus import ConfState, HardState, Snapshot, SnapshotMeta
from feitian.coord.core import DEFAULT_LIMITS, CoordLimits, CoordStateMachine
from feitian.runtime.raft_store import RaftStore

__all__ = ["check_snapshot", "restore_replica"]


def check_snapshot(data: bytes, limits: CoordLimits = DEFAULT_LIMITS) -> CoordStateMachine:
    """The state a snapshot holds; DataCorruptionError if it is not a consistent Nuwa snapshot."""
    sm = CoordStateMachine(limits)
    sm.restore(data)
    return sm


def restore_replica(data: bytes, data_dir: str, voters: tuple[int, ...], limits: CoordLimits = DEFAULT_LIMITS) -> str:
    """Replace the Raft store of the (stopped) replica whose node data directory is ``data_dir``; returns where
    the old store was moved ("" if there was none)."""
    sm = check_snapshot(data, limits)
    raft_dir = os.path.join(data_dir, "raft")
    kept = ""
    if os.path.exists(raft_dir):
        kept = f"{raft_dir}.before-restore-{time.strftime('%Y%m%d-%H%M%S')}-{time.monotonic_ns() % 1000:03d}"
        os.rename(raft_dir, kept)
    term = max(1, sm.leader_epoch)
    store = RaftStore.open(raft_dir)
    try:
        meta = SnapshotMeta(index=1, term=term, conf=ConfState(voters=tuple(sorted(voters))))
        store.save(HardState(term=term, vote=0, commit=1), [], Snapshot(meta=meta, data=data))
        store.sync()
    finally:
        store.close()
    return kept
