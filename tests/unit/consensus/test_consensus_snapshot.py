"""Log compaction and InstallSnapshot (Raft paper §7), and the storage contract the core reads."""

from __future__ import annotations

import pytest
from consensus_harness import Cluster, handle, make_node, of_type

from feitian.consensus import (
    AppendEntries,
    AppendEntriesReply,
    ConfState,
    Entry,
    HardState,
    InstallSnapshot,
    LogCompactedError,
    LogUnavailableError,
    MemoryStorage,
    ProgressState,
    Snapshot,
    SnapshotMeta,
)
from feitian.errors import ConflictError


def _compact(c: Cluster, node_id: int, keep: int = 0) -> None:
    node = c.nodes[node_id]
    storage = c.storages[node_id]
    applied = node.applied_index
    storage.create_snapshot(applied, node.conf_state, f"state@{applied}".encode())
    storage.compact(applied - keep)


def test_lagging_follower_receives_snapshot() -> None:
    """§7: when the entries a follower needs were discarded, the leader sends InstallSnapshot; the follower
    replaces its log with it and continues from the log after it."""
    c = Cluster()
    leader = c.elect(1)
    c.isolate(3)
    for i in range(5):
        leader.propose(f"v{i}".encode())
    c.settle()
    _compact(c, 1)
    c.heal()
    c.tick([1], times=2)
    snapshots = [m for m in c.delivered if isinstance(m, InstallSnapshot) and m.to_id == 3]
    assert len(snapshots) == 1
    assert c.storages[3].snapshot().data == f"state@{leader.applied_index}".encode()
    leader.propose(b"after")
    c.settle()
    assert c.data_applied(3) == [b"after"]  # everything before came in the snapshot
    assert c.nodes[3].applied_index == leader.applied_index


def test_snapshot_ready_carries_snapshot_and_advances_applied() -> None:
    """§7: the follower persists the snapshot (Ready.snapshot) and its applied index jumps to it."""
    node, storage = make_node(2)
    snapshot = Snapshot(meta=SnapshotMeta(index=10, term=3, conf=ConfState(voters=(1, 2, 3))), data=b"s")
    node.step(InstallSnapshot(from_id=1, to_id=2, term=3, snapshot=snapshot))
    rd = node.ready()
    assert rd is not None and rd.snapshot == snapshot
    assert rd.hard_state is not None and rd.hard_state.commit == 10
    reply = of_type(rd.messages, AppendEntriesReply)[0]
    assert reply.index == 10 and not reply.reject  # type: ignore[attr-defined]
    storage.apply_snapshot(rd.snapshot)
    storage.set_hard_state(rd.hard_state)
    node.advance(rd)
    assert node.applied_index == 10 and node.commit_index == 10


def test_stale_snapshot_is_ignored() -> None:
    """§7: a snapshot describing a prefix the follower already committed is ignored (answered with the
    follower's commit index)."""
    c = Cluster()
    leader = c.elect(1)
    for i in range(3):
        leader.propose(bytes([i]))
    c.settle()
    old = Snapshot(meta=SnapshotMeta(index=2, term=2, conf=ConfState(voters=(1, 2, 3))))
    c.nodes[2].step(InstallSnapshot(from_id=1, to_id=2, term=leader.term, snapshot=old))
    out = c.handle(2)
    assert out.readies[0].snapshot is None
    reply = of_type(out.messages, AppendEntriesReply)[0]
    assert reply.index == c.nodes[2].commit_index  # type: ignore[attr-defined]


def test_snapshot_matching_log_only_commits() -> None:
    """§7: if the follower's log already holds the snapshot's last entry, it keeps its log (the entries
    after it stay) and only learns that the prefix is committed."""
    node, storage = make_node(2)
    node.step(
        AppendEntries(
            from_id=1,
            to_id=2,
            term=2,
            prev_log_index=1,
            prev_log_term=1,
            entries=(Entry(term=2, index=2), Entry(term=2, index=3)),
        )
    )
    handle(node, storage)
    snapshot = Snapshot(meta=SnapshotMeta(index=2, term=2, conf=ConfState(voters=(1, 2, 3))))
    node.step(InstallSnapshot(from_id=1, to_id=2, term=2, snapshot=snapshot))
    out = handle(node, storage)
    assert all(rd.snapshot is None for rd in out.readies)
    assert node.commit_index == 2 and storage.last_index() == 3


def test_lost_snapshot_is_resent_after_timeout() -> None:
    """A lost InstallSnapshot does not wedge the follower: after snapshot_timeout_tick the leader probes
    again and sends a fresh snapshot."""
    c = Cluster(snapshot_timeout_tick=20)
    leader = c.elect(1)
    c.isolate(3)
    for i in range(3):
        leader.propose(bytes([i]))
    c.settle()
    _compact(c, 1)
    c.heal()
    c.drop = lambda m: isinstance(m, InstallSnapshot)
    c.tick([1], times=3)
    assert leader.status().progress[3].state == ProgressState.SNAPSHOT
    c.heal()
    c.tick([1], times=25)
    assert leader.status().progress[3].state == ProgressState.REPLICATE
    assert c.nodes[3].applied_index == leader.applied_index


def test_report_snapshot_resumes_replication() -> None:
    """The driver's report_snapshot(failed=True) makes the leader probe and resend without waiting."""
    c = Cluster()
    leader = c.elect(1)
    c.isolate(3)
    leader.propose(b"x")
    c.settle()
    _compact(c, 1)
    c.heal()
    c.drop = lambda m: isinstance(m, InstallSnapshot)
    c.tick([1])
    assert leader.status().progress[3].state == ProgressState.SNAPSHOT
    leader.report_snapshot(3, failed=True)
    assert leader.status().progress[3].state == ProgressState.PROBE
    c.heal()
    c.tick([1], times=2)
    assert c.nodes[3].applied_index == leader.applied_index


def test_restart_resumes_from_snapshot_and_reapplies_committed_tail() -> None:
    """§7 and the Ready contract: a restarted replica starts applied at its snapshot and gets the committed
    entries after it again; its term, vote and commit come from the persisted hard state."""
    c = Cluster()
    leader = c.elect(1)
    for i in range(4):
        leader.propose(f"a{i}".encode())
    c.settle()
    _compact(c, 2, keep=2)
    snapshot_index = c.storages[2].snapshot().meta.index
    leader.propose(b"b")
    c.settle()
    node = c.restart(2)
    assert node.applied_index == snapshot_index
    assert node.term == leader.term
    c.handle(2)
    assert c.data_applied(2) == [b"b"]


def test_memory_storage_contract() -> None:
    """The Storage read interface: first/last index, term of the snapshot's dummy entry, errors below and
    above the log, size-limited entries (at least one)."""
    s = MemoryStorage()
    s.apply_snapshot(Snapshot(meta=SnapshotMeta(index=5, term=2, conf=ConfState(voters=(1,)))))
    s.append([Entry(term=2, index=6, data=b"a" * 10), Entry(term=3, index=7, data=b"b" * 10)])
    assert (s.first_index(), s.last_index()) == (6, 7)
    assert s.term(5) == 2 and s.term(7) == 3
    with pytest.raises(LogCompactedError):
        s.term(4)
    with pytest.raises(LogUnavailableError):
        s.term(8)
    with pytest.raises(LogCompactedError):
        s.entries(5, 7, 100)
    with pytest.raises(LogUnavailableError):
        s.entries(6, 9, 100)
    assert len(s.entries(6, 8, 1)) == 1
    assert len(s.entries(6, 8, 1000)) == 2
    # Appending at an existing index replaces it and everything after.
    s.append([Entry(term=4, index=7, data=b"c")])
    assert s.term(7) == 4 and s.last_index() == 7
    s.set_hard_state(HardState(term=4, vote=1, commit=7))
    assert s.initial_state() == (HardState(term=4, vote=1, commit=7), ConfState(voters=(1,)))
    s.create_snapshot(7, ConfState(voters=(1,)), b"state")
    s.compact(7)
    assert (s.first_index(), s.last_index()) == (8, 7)
    with pytest.raises(ConflictError):
        s.apply_snapshot(Snapshot(meta=SnapshotMeta(index=6, term=2, conf=ConfState())))
