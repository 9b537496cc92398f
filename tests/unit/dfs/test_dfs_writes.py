"""Write leases, chunk allocation, commits, version bumps, replica set changes, locate and plan_write."""

from __future__ import annotations

import pytest
from dfs_fixtures import SECOND_NS, SMALL, Master

from feitian.dfs.core import (
    AcquireLease,
    AddChunk,
    AddReplica,
    BumpChunkVersion,
    CloseFile,
    CommitChunk,
    Create,
    FileType,
    LeaseMode,
    Mkdir,
    RegisterServer,
    RemovalReason,
    RemoveReplica,
    RemoveServer,
    RenewLease,
    ServerState,
    SetServerState,
)
from feitian.errors import ConflictError, InvalidArgumentError, NotFoundError

CHUNK = SMALL.default_chunk_size_bytes
GRACE_S = SMALL.takeover_grace_ns / SECOND_NS


@pytest.fixture
def m() -> Master:
    master = Master()
    master.servers(5)
    return master


R3 = ("cs0", "cs1", "cs2")


# -- leases -------------------------------------------------------------------------------------------------------


def test_one_writer_per_file(m: Master) -> None:
    m.ok(Create("/f", m.now))
    grant = m.open_write("/f", "alice", LeaseMode.APPEND, ttl_s=10)
    error = m.refused(
        AcquireLease("/f", "bob", LeaseMode.APPEND, m.now, m.now + SECOND_NS),
        ConflictError,
        "open for writing /f: file is open for writing by 'alice'",
    )
    assert error.fields["holder"] == "alice"
    # the same holder re-acquiring renews the same lease
    again = m.open_write("/f", "alice", LeaseMode.APPEND, ttl_s=20)
    assert again.lease_id == grant.lease_id and again.expires_ns > grant.expires_ns
    # changing mode is a new lease: the old lease id is stale from then on
    random = m.open_write("/f", "alice", LeaseMode.RANDOM, ttl_s=20)
    assert random.lease_id != grant.lease_id
    m.refused(RenewLease(grant.file_id, grant.lease_id, m.now, m.now + SECOND_NS), ConflictError, "is stale")


def test_takeover_only_after_expiry_plus_grace(m: Master) -> None:
    file_id, lease = m.create("/f", holder="alice", ttl_s=10)
    m.tick(10)  # expired, but within the grace
    m.refused(AcquireLease("/f", "bob", LeaseMode.APPEND, m.now, m.now + SECOND_NS), ConflictError, "alice")
    m.tick(GRACE_S)
    bob = m.open_write("/f", "bob", LeaseMode.APPEND)
    assert bob.lease_id != lease
    # alice is now a stale writer: every write-side command of hers is refused
    m.refused(AddChunk(file_id, lease, m.sm.next_chunk_id, R3, m.now), ConflictError, "lease 1 is stale", "'bob'")
    m.refused(CloseFile(file_id, lease, m.now), ConflictError, "stale")


def test_expired_lease_cannot_write_but_can_renew_if_not_taken(m: Master) -> None:
    file_id, lease = m.create("/f", ttl_s=5)
    m.tick(6)
    error = m.refused(AddChunk(file_id, lease, m.sm.next_chunk_id, R3, m.now), ConflictError, "expired")
    assert error.hint == "renew the lease before writing"
    m.ok(RenewLease(file_id, lease, m.now, m.now + 5 * SECOND_NS))
    m.add_chunk(file_id, lease, R3)


def test_lease_errors(m: Master) -> None:
    m.ok(Mkdir("/d", m.now))
    m.refused(AcquireLease("/d", "a", LeaseMode.APPEND, m.now, m.now + SECOND_NS), ConflictError, "/d: is a directory")
    m.refused(AcquireLease("/nope", "a", LeaseMode.APPEND, m.now, m.now + SECOND_NS), NotFoundError, "/nope")
    m.ok(Create("/log", m.now, file_type=FileType.LOG))
    m.refused(
        AcquireLease("/log", "a", LeaseMode.RANDOM, m.now, m.now + SECOND_NS), InvalidArgumentError, "append-only"
    )
    m.refused(
        Create(
            "/log2", m.now, file_type=FileType.LOG, holder="a", lease_mode=LeaseMode.RANDOM, lease_expires_ns=m.now + 1
        ),
        InvalidArgumentError,
        "log files are append-only",
    )
    m.refused(RenewLease(999, 1, m.now, m.now + 1), NotFoundError, "file 999 does not exist")
    m.ok(Create("/f", m.now))
    file_id = m.sm.stat("/f").inode
    m.refused(CloseFile(file_id, 1, m.now), ConflictError, "not open for writing")


def test_close_commits_the_last_chunk_and_releases(m: Master) -> None:
    file_id, lease = m.create("/f")
    m.add_chunk(file_id, lease, R3)
    assert m.ok(CloseFile(file_id, lease, m.now, last_chunk_length=100)) == 100
    status = m.sm.stat("/f")
    assert status.length == 100 and status.lease_holder is None and m.sm.leased_files() == frozenset()
    # another writer can open at once after a close
    m.open_write("/f", "bob", LeaseMode.APPEND)


def test_close_errors(m: Master) -> None:
    file_id, lease = m.create("/f")
    m.refused(CloseFile(file_id, lease, m.now, last_chunk_length=10), InvalidArgumentError, "no chunk")
    m.add_chunk(file_id, lease, R3)
    m.ok(CommitChunk(file_id, lease, 1, 50, False, m.now))
    m.refused(CloseFile(file_id, lease, m.now, last_chunk_length=10), ConflictError, "drop committed bytes")
    m.refused(CloseFile(file_id, lease, m.now, last_chunk_length=CHUNK + 1), InvalidArgumentError, "chunk size")
    m.ok(CloseFile(file_id, lease, m.now, last_chunk_length=60, seal_last=True))
    lease2 = m.open_write("/f", "client-a", LeaseMode.APPEND).lease_id
    m.refused(CloseFile(file_id, lease2, m.now, last_chunk_length=70), ConflictError, "sealed at 60 bytes")


# -- chunks -------------------------------------------------------------------------------------------------------


def test_add_chunk_seals_the_previous_one_and_ids_are_never_reused(m: Master) -> None:
    file_id, lease = m.create("/f")
    first = m.add_chunk(file_id, lease, R3)
    assert (first.chunk_id, first.version, first.index, first.length, first.sealed) == (1, 1, 0, 0, False)
    m.refused(AddChunk(file_id, lease, m.sm.next_chunk_id, R3, m.now), ConflictError, "last chunk 1 is not sealed")
    m.refused(AddChunk(file_id, lease, 1, R3, m.now, previous_length=10), InvalidArgumentError, "already allocated")
    second = m.add_chunk(file_id, lease, ("cs3", "cs4", "cs0"), previous_length=CHUNK)
    assert second.file_offset == CHUNK and second.index == 1
    assert m.sm.chunk_location(1).sealed and m.sm.stat("/f").length == CHUNK
    m.ok(AddChunk(file_id, lease, 10, R3, m.now, previous_length=7))  # ids may skip ahead (leader reservations)
    assert m.sm.next_chunk_id == 11
    # a sealed last chunk and a mismatching previous length
    m.ok(CommitChunk(file_id, lease, 10, 7, True, m.now))
    m.refused(AddChunk(file_id, lease, 11, R3, m.now, previous_length=8), ConflictError, "sealed at 7 bytes")


def test_add_chunk_replica_set_checks(m: Master) -> None:
    file_id, lease = m.create("/f", replication=3, min_write_replicas=2)
    m.refused(
        AddChunk(file_id, lease, 1, ("cs0",), m.now), InvalidArgumentError, "1 replicas given, this file needs 2..3"
    )
    m.refused(AddChunk(file_id, lease, 1, ("cs0", "cs0"), m.now), InvalidArgumentError, "names a server twice")
    m.refused(AddChunk(file_id, lease, 1, ("cs0", "nope"), m.now), NotFoundError, "'nope' is not registered")
    m.ok(SetServerState("cs1", ServerState.DECOMMISSIONING))
    m.refused(AddChunk(file_id, lease, 1, ("cs0", "cs1"), m.now), InvalidArgumentError, "decommissioning")
    m.add_chunk(file_id, lease, ("cs0", "cs2"))


def test_max_chunks_per_file() -> None:
    from feitian.dfs.core import NamespaceConfig

    m = Master(NamespaceConfig(max_chunks_per_file=2))
    m.servers(3)
    file_id, lease = m.create("/f", replication=1)
    m.add_chunk(file_id, lease, ("cs0",))
    m.add_chunk(file_id, lease, ("cs1",), previous_length=1)
    m.refused(AddChunk(file_id, lease, 3, ("cs2",), m.now, 1), InvalidArgumentError, "max_chunks_per_file 2")
    with pytest.raises(InvalidArgumentError, match="max_chunks_per_file"):
        m.sm.plan_write(file_id, lease, 1, 10**9, m.now)


def test_commit_chunk_rules(m: Master) -> None:
    file_id, lease = m.create("/f")
    other_id, other_lease = m.create("/g")
    m.add_chunk(file_id, lease, R3)
    m.ok(CommitChunk(file_id, lease, 1, 10, False, m.now))
    m.refused(CommitChunk(file_id, lease, 1, 5, False, m.now), ConflictError, "would drop committed bytes")
    m.refused(CommitChunk(file_id, lease, 1, CHUNK + 1, False, m.now), InvalidArgumentError, "exceeds the chunk size")
    m.refused(CommitChunk(other_id, other_lease, 1, 20, False, m.now), InvalidArgumentError, "belongs to another file")
    m.refused(CommitChunk(file_id, lease, 99, 20, False, m.now), NotFoundError, "chunk 99 does not exist")
    m.ok(CommitChunk(file_id, lease, 1, 20, True, m.now))
    m.ok(CommitChunk(file_id, lease, 1, 20, True, m.now))  # idempotent on a sealed chunk
    m.refused(CommitChunk(file_id, lease, 1, 30, False, m.now), ConflictError, "sealed at 20 bytes")
    assert m.sm.stat("/f").length == 20


def test_bump_version_rebuilds_the_pipeline(m: Master) -> None:
    file_id, lease = m.create("/f", replication=3, min_write_replicas=2)
    m.add_chunk(file_id, lease, R3)
    m.ok(CommitChunk(file_id, lease, 1, 100, False, m.now))
    m.refused(BumpChunkVersion(file_id, lease, 1, 3, R3, m.now), ConflictError, "new version must be 2, got 3")
    m.refused(BumpChunkVersion(file_id, lease, 1, 2, ("cs0",), m.now), InvalidArgumentError, "needs 2..3")
    m.refused(BumpChunkVersion(file_id, lease, 1, 2, R3, m.now, length=50), ConflictError, "drop committed bytes")
    # cs2 failed: continue with the survivors and a replacement, at the length the survivors agree on
    loc = m.ok(BumpChunkVersion(file_id, lease, 1, 2, ("cs0", "cs1", "cs3"), m.now, length=120))
    assert (loc.version, loc.replicas, loc.length) == (2, ("cs0", "cs1", "cs3"), 120)
    assert m.sm.chunks_on("cs2") == () and m.sm.chunks_on("cs3") == (1,)
    # or seal it with a single survivor and continue on a new chunk
    loc = m.ok(BumpChunkVersion(file_id, lease, 1, 3, ("cs0",), m.now, length=130, seal=True))
    assert loc.sealed and loc.length == 130 and m.sm.stat("/f").length == 130
    m.refused(BumpChunkVersion(file_id, lease, 1, 4, R3, m.now), ConflictError, "sealed", "append-only")


def test_new_lease_must_bump_before_writing_and_stale_writer_is_fenced(m: Master) -> None:
    file_id, alice = m.create("/f", holder="alice", ttl_s=5)
    m.add_chunk(file_id, alice, R3)
    m.tick(5 + GRACE_S)
    bob = m.open_write("/f", "bob", LeaseMode.APPEND).lease_id
    plan = m.sm.plan_write(file_id, bob, 0, 10, m.now)
    assert plan.bump_first == (1,)
    m.refused(CommitChunk(file_id, bob, 1, 10, False, m.now), ConflictError, "bump its version under lease")
    m.ok(BumpChunkVersion(file_id, bob, 1, 2, R3, m.now, length=0))
    assert m.sm.plan_write(file_id, bob, 0, 10, m.now).bump_first == ()
    m.ok(CommitChunk(file_id, bob, 1, 10, False, m.now))
    m.refused(CommitChunk(file_id, alice, 1, 20, False, m.now), ConflictError, "stale")


def test_random_lease_rewrites_sealed_chunks_after_a_bump(m: Master) -> None:
    file_id, lease = m.create("/f")
    m.add_chunk(file_id, lease, R3)
    m.add_chunk(file_id, lease, R3, previous_length=CHUNK)
    m.ok(CloseFile(file_id, lease, m.now, last_chunk_length=10))
    rnd = m.open_write("/f", "client-a", LeaseMode.RANDOM).lease_id
    plan = m.sm.plan_write(file_id, rnd, CHUNK - 5, 20, m.now)
    assert [(loc.chunk_id, off, n) for loc, off, n in plan.touched] == [(1, CHUNK - 5, 5), (2, 0, 15)]
    assert plan.bump_first == (1, 2) and plan.new_chunks == 0
    m.refused(BumpChunkVersion(file_id, rnd, 1, 2, R3, m.now, length=5), ConflictError, "sealed at")
    assert m.ok(BumpChunkVersion(file_id, rnd, 1, 2, R3, m.now)).version == 2


def test_plan_write_errors_and_mapping(m: Master) -> None:
    file_id, lease = m.create("/f")
    m.add_chunk(file_id, lease, R3)
    m.ok(CommitChunk(file_id, lease, 1, 100, False, m.now))
    with pytest.raises(InvalidArgumentError, match="written only at its end \\(100\\), not at 50"):
        m.sm.plan_write(file_id, lease, 50, 10, m.now)
    with pytest.raises(InvalidArgumentError, match="past the end of the file"):
        m.sm.plan_write(file_id, lease, 101, 10, m.now)
    with pytest.raises(InvalidArgumentError, match="length 0 > 0"):
        m.sm.plan_write(file_id, lease, 100, 0, m.now)
    plan = m.sm.plan_write(file_id, lease, 100, 2 * CHUNK, m.now)
    assert [(loc.chunk_id, off, n) for loc, off, n in plan.touched] == [(1, 100, CHUNK - 100)]
    assert (plan.new_chunks, plan.bytes_in_new_chunks) == (2, CHUNK + 100)
    with pytest.raises(ConflictError, match="stale"):
        m.sm.plan_write(file_id, lease + 100, 100, 1, m.now)
    log_id, log_lease = m.create("/log", holder="w", file_type=FileType.LOG)
    m.add_chunk(log_id, log_lease, R3)
    m.ok(CommitChunk(log_id, log_lease, 2, 30, False, m.now))
    with pytest.raises(InvalidArgumentError, match="a log file is written only at its end \\(30\\), not at 0"):
        m.sm.plan_write(log_id, log_lease, 0, 1, m.now)
    assert m.sm.plan_write(log_id, log_lease, 30, 1, m.now).touched[0][1:] == (30, 1)


# -- locate -------------------------------------------------------------------------------------------------------


def test_locate_byte_ranges_and_reading_past_the_end(m: Master) -> None:
    file_id, lease = m.create("/f")
    m.add_chunk(file_id, lease, R3)
    m.add_chunk(file_id, lease, R3, previous_length=CHUNK - 10)  # a short sealed chunk
    m.ok(CommitChunk(file_id, lease, 2, 50, False, m.now))
    length = CHUNK - 10 + 50
    located = m.sm.locate("/f", 0, length)
    assert [c.chunk_id for c in located.chunks] == [1, 2] and located.tail_open and located.file_length == length
    assert [c.chunk_id for c in m.sm.locate("/f", CHUNK - 10, 5).chunks] == [2]
    assert [c.chunk_id for c in m.sm.locate("/f", CHUNK - 11, 1).chunks] == [1]
    assert m.sm.locate("/f", length, 0).chunks == ()
    with pytest.raises(InvalidArgumentError, match=r"read /f: bytes \[0, 100000\) are past the end"):
        m.sm.locate("/f", 0, 100000)
    with pytest.raises(InvalidArgumentError, match="past the end"):
        m.sm.locate("/f", length + 1, 0)
    tail = m.sm.locate("/f", length, 100, allow_tail=True)  # a reader tailing the file being written
    assert [c.chunk_id for c in tail.chunks] == [2]
    m.ok(CloseFile(file_id, lease, m.now, seal_last=True))
    with pytest.raises(InvalidArgumentError, match="past the end"):
        m.sm.locate("/f", length, 100, allow_tail=True)
    with pytest.raises(InvalidArgumentError, match="must be >= 0"):
        m.sm.locate("/f", -1, 1)
    m.ok(Mkdir("/d", m.now))
    with pytest.raises(ConflictError, match="read /d: is a directory"):
        m.sm.locate("/d", 0, 0)
    assert m.sm.locate_file(file_id, 0, 1).chunks[0].chunk_id == 1


# -- replica set changes and servers ------------------------------------------------------------------------------


def test_add_and_remove_replica(m: Master) -> None:
    file_id, lease = m.create("/f")
    m.add_chunk(file_id, lease, R3)
    m.ok(CommitChunk(file_id, lease, 1, 10, False, m.now))
    m.refused(AddReplica(1, "cs3", 1, 10, m.now), ConflictError, "being written")
    m.ok(CloseFile(file_id, lease, m.now))
    m.refused(AddReplica(1, "cs3", 1, 9, m.now), ConflictError, "discard the copy")
    m.refused(AddReplica(1, "cs3", 2, 10, m.now), ConflictError, "version 2")
    m.refused(AddReplica(1, "nope", 1, 10, m.now), NotFoundError, "not registered")
    assert m.ok(AddReplica(1, "cs3", 1, 10, m.now)).replicas == ("cs0", "cs1", "cs2", "cs3")
    assert m.ok(AddReplica(1, "cs3", 1, 10, m.now)).replicas == ("cs0", "cs1", "cs2", "cs3")  # idempotent
    m.ok(RemoveReplica(1, "cs0", RemovalReason.BALANCE))
    m.refused(RemoveReplica(1, "cs1", RemovalReason.EXCESS), ConflictError, "would leave 2 replicas, the file needs 3")
    assert m.ok(RemoveReplica(1, "cs1", RemovalReason.CORRUPT)).replicas == ("cs2", "cs3")
    assert m.ok(RemoveReplica(1, "cs1", RemovalReason.CORRUPT)).replicas == ("cs2", "cs3")  # idempotent
    m.ok(SetServerState("cs4", ServerState.DECOMMISSIONING))
    m.refused(AddReplica(1, "cs4", 1, 10, m.now), InvalidArgumentError, "decommissioning")


def test_servers_register_update_and_remove(m: Master) -> None:
    assert not m.ok(RegisterServer("cs0", "tcp://new:1", "rack9", 5, m.now))  # an update
    assert m.sm.server("cs0").rack == "rack9" and m.sm.server("nope") is None  # type: ignore[union-attr]
    m.refused(RegisterServer("cs9", "tcp://x:1", "r", 0, m.now), InvalidArgumentError, "capacity_bytes must be > 0")
    m.refused(RegisterServer("", "tcp://x:1", "r", 1, m.now), InvalidArgumentError, "server id must be 1..")
    file_id, lease = m.create("/f")
    m.add_chunk(file_id, lease, R3)
    m.refused(RemoveServer("cs0"), InvalidArgumentError, "still holds 1 replicas")
    assert m.ok(RemoveServer("cs0", force=True)) == 1
    assert m.sm.chunk_location(1).replicas == ("cs1", "cs2") and m.sm.server("cs0") is None
    m.refused(RemoveServer("cs0"), NotFoundError, "not registered")
    m.refused(SetServerState("cs0", ServerState.ACTIVE), NotFoundError, "not registered")
    assert m.ok(RemoveServer("cs4")) == 0


def test_max_servers() -> None:
    from feitian.dfs.core import NamespaceConfig

    m = Master(NamespaceConfig(max_servers=2))
    m.servers(2)
    m.refused(RegisterServer("cs9", "tcp://x:1", "r", 1, m.now), InvalidArgumentError, "max_servers 2")


def test_expired_leases_for_master_recovery(m: Master) -> None:
    a, _ = m.create("/a", ttl_s=5)
    m.create("/b", ttl_s=50)
    assert m.sm.expired_leases(m.now) == ()
    m.tick(5 + GRACE_S)
    expired = m.sm.expired_leases(m.now)
    assert [(e.file_id, e.path, e.holder) for e in expired] == [(a, "/a", "client-a")]


def test_quiescence_rules(m: Master) -> None:
    file_id, lease = m.create("/f")
    m.add_chunk(file_id, lease, R3)
    m.add_chunk(file_id, lease, R3, previous_length=CHUNK)
    assert m.sm.chunk_is_quiescent(1, m.now)  # sealed, append lease
    assert not m.sm.chunk_is_quiescent(2, m.now)  # being written
    m.ok(CloseFile(file_id, lease, m.now, last_chunk_length=5))
    assert m.sm.chunk_is_quiescent(2, m.now)  # no lease
    m.open_write("/f", "w", LeaseMode.RANDOM, ttl_s=5)
    assert not m.sm.chunk_is_quiescent(1, m.now)  # random writer may rewrite it
    m.tick(5 + GRACE_S)
    assert m.sm.chunk_is_quiescent(1, m.now) and not m.sm.chunk_is_quiescent(2, m.now)


def test_snapshot_restores_leases_index_and_next_ids(m: Master) -> None:
    file_id, lease = m.create("/f")
    m.add_chunk(file_id, lease, R3)
    other = Master()
    other.sm.restore(m.sm.snapshot())
    other.sm.validate()
    assert other.sm.snapshot() == m.sm.snapshot()
    assert other.sm.leased_files() == {file_id} and other.sm.next_chunk_id == 2 and other.sm.chunks_on("cs0") == (1,)
    assert other.sm.applied_index == m.sm.applied_index
    with pytest.raises(InvalidArgumentError, match="snapshot format"):
        bad = Master()
        import msgspec

        raw = msgspec.msgpack.decode(m.sm.snapshot())
        raw[0] = 99
        bad.sm.restore(msgspec.msgpack.encode(raw))
