"""A replica's figures in its node's uniform status (feitian.rpc.status): every replicated role (coord, the Pangu
masters, kv) calls :func:`add_replica_stats` once its replica has started, so ``node.Stats`` and ``/metrics``
show the same Raft figures under the same names whatever the service."""

from __future__ import annotations

from feitian.replica.driver import Replica
from feitian.rpc import Metric, NodeStats, Replication

__all__ = ["REPLICA_METRICS", "add_replica_stats"]

REPLICA_METRICS = (
    Metric("replica_proposals", "counter", "commands this replica accepted for replication as leader"),
    Metric("replica_entries_persisted", "counter", "log entries this replica wrote to its durable log"),
    Metric("replica_fsyncs", "counter", "fsyncs of the replica's log"),
    Metric("replica_slow_fsyncs", "counter", "log writes that took over 50 ms"),
    Metric("replica_snapshots_installed", "counter", "snapshots received from a leader (it had fallen behind)"),
    Metric("replica_snapshots_sent", "counter", "snapshots sent whole to followers that had fallen behind"),
    Metric("replica_loop_errors", "counter", "unexpected failures of the Ready loop (each logged)"),
    Metric("replica_snapshot_index", "gauge", "the log index of the replica's latest snapshot"),
    Metric("replica_snapshot_bytes", "gauge", "the size of the last snapshot this replica took"),
    Metric("replica_log_writable", "gauge", "1 while the replica can write its log, 0 after a disk error"),
)


def add_replica_stats(stats: NodeStats, replica: Replica) -> None:
    """Report ``replica`` (started) in ``stats``: its place in the group and :data:`REPLICA_METRICS`."""

    def replication() -> Replication | None:
        if replica.node is None:  # stopped before it started
            return None
        s = replica.stats()
        return Replication(
            role=s.role,
            term=s.term,
            leader_id=s.leader_id,
            leader=replica.leader_address or "",
            commit_index=s.commit_index,
            applied_index=s.applied_index,
        )

    def figures() -> dict[str, float]:
        if replica.node is None:
            return dict.fromkeys((m.name for m in REPLICA_METRICS), 0)
        s = replica.stats()
        return {
            "replica_proposals": s.proposals,
            "replica_entries_persisted": s.entries_persisted,
            "replica_fsyncs": s.fsyncs,
            "replica_slow_fsyncs": s.slow_fsyncs,
            "replica_snapshots_installed": s.snapshots_installed,
            "replica_snapshots_sent": s.snapshots_sent,
            "replica_loop_errors": s.loop_errors,
            "replica_snapshot_index": s.snapshot_index,
            "replica_snapshot_bytes": s.snapshot_bytes,
            "replica_log_writable": 0 if s.disk_error else 1,
        }

    stats.set_replication(replication)
    stats.add_source(REPLICA_METRICS, figures)
