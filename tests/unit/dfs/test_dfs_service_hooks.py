"""Core additions the services rely on: reports that predate a change do not condemn a replica (but positive
evidence counts at once), reads up to the master's committed length, and checksums computed without copies."""

from __future__ import annotations

import os
import random

import pytest
from dfs_fixtures import SECOND_NS, Master

from feitian.dfs.core import (
    ChunkReplica,
    CloseFile,
    ClusterConfig,
    ClusterState,
    ReplicaReport,
    ReplicaState,
    apply_block_write,
    block_checksums,
    verified_slice,
)
from feitian.errors import ConfigError, InvalidArgumentError

GRACE_NS = 3 * SECOND_NS


def closed_chunk(m: Master, length: int) -> tuple[int, tuple[str, ...]]:
    file_id, lease = m.create("/f")
    location = m.add_chunk(file_id, lease, ("cs0", "cs1", "cs2"))
    m.ok(CloseFile(file_id, lease, m.now, last_chunk_length=length, seal_last=True))
    return location.chunk_id, location.replicas


def test_a_report_older_than_the_change_cannot_condemn_a_replica() -> None:
    m = Master()
    m.servers(3, racks=3)
    cs = ClusterState(m.sm, m.now, ClusterConfig(report_grace_ns=GRACE_NS))
    chunk, replicas = closed_chunk(m, 1000)
    for server in replicas:  # taken while the chunk was still being written: 400 of its 1000 bytes
        cs.handle_chunk_report(server, m.now, [ReplicaReport(chunk, 1, 400)])
    cs.note_chunk_changed(chunk, m.now)  # the close committed 1000 bytes
    assert set(cs.replica_states(chunk, m.now).values()) == {ReplicaState.UNCONFIRMED}
    assert cs.cleanup(m.now) == []  # nothing removed on the strength of old reports
    cs.handle_chunk_added(replicas[0], ReplicaReport(chunk, 1, 1000), m.now)  # up to date: good at once
    assert cs.replica_states(chunk, m.now)[replicas[0]] is ReplicaState.GOOD
    m.tick(4)  # a report received well after the change, still short: stale now
    cs.handle_chunk_added(replicas[1], ReplicaReport(chunk, 1, 400), m.now)
    cs.handle_chunk_report(replicas[2], m.now, [])
    states = cs.replica_states(chunk, m.now)
    assert states[replicas[1]] is ReplicaState.STALE and states[replicas[2]] is ReplicaState.LOST
    cs.forget_changes_before(m.now + 10**12)
    assert cs.changed_ns == {}


def test_without_changes_noted_reports_judge_as_before() -> None:
    m = Master()
    m.servers(3, racks=3)
    cs = ClusterState(m.sm, m.now, ClusterConfig(report_grace_ns=GRACE_NS))
    chunk, replicas = closed_chunk(m, 1000)
    cs.handle_chunk_report(replicas[0], m.now, [ReplicaReport(chunk, 1, 400)])
    assert cs.replica_states(chunk, m.now)[replicas[0]] is ReplicaState.STALE
    with pytest.raises(ConfigError, match="report_grace_ns"):
        ClusterConfig(report_grace_ns=-1).validate()


def test_committed_length_makes_acknowledged_bytes_readable() -> None:
    replica = ChunkReplica.create(7, 1, 16 * 4096, 4096)
    data = os.urandom(10_000)
    replica.apply_write(1, 0, 0, data, {})  # written, but no commit_through yet
    assert replica.readable_length == 0
    with pytest.raises(InvalidArgumentError, match="readable length 0"):
        replica.read_span(1, 0, 100)
    assert replica.read_span(1, 0, 10_000, committed_length=10_000) == (0, 10_000)
    with pytest.raises(InvalidArgumentError, match="readable length 10000"):
        replica.read_span(1, 0, 10_001, committed_length=20_000)  # never past what the replica holds


def test_whole_block_writes_and_whole_span_reads_need_no_copies() -> None:
    rng = random.Random(3)
    data = rng.randbytes(3 * 4096 + 100)
    table, length = apply_block_write([], 0, 0, memoryview(data), {}, 8 * 4096, 4096)
    assert table == block_checksums(data, 4096) and length == len(data)
    assert verified_slice(data, 0, 0, len(data), table, 4096) is data
    assert verified_slice(data, 0, 5, 10, table, 4096) == data[5:15]
