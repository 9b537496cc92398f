"""One replica's write-pipeline state: versions, write order, duplicates, sealing, pipeline sync, reads."""

from __future__ import annotations

import msgspec
import pytest

from feitian.dfs.core import ChunkReplica, ReplicaRecord, WriteOutcome, block_checksums
from feitian.errors import ConflictError, DataCorruptionError, InvalidArgumentError

B = 64
CAP = 16 * B


class Disk:
    """The chunk server's side: bytes on disk next to the replica state (the core only keeps checksums)."""

    def __init__(self, replica: ChunkReplica) -> None:
        self.replica = replica
        self.data = bytearray()

    def write(self, version: int, seq: int, offset: int, data: bytes, commit_through: int = -1) -> WriteOutcome:
        plan = self.replica.plan_write(version, seq, offset, len(data))
        old = {} if plan is None else {b: bytes(self.data[b * B : (b + 1) * B]) for b in plan.old_blocks}
        outcome = self.replica.apply_write(version, seq, offset, data, old, commit_through=commit_through)
        if outcome is WriteOutcome.APPLIED:
            self.data[offset : offset + len(data)] = data
        return outcome

    def sync(self, version: int, length: int, seal: bool = False) -> None:
        block = self.replica.sync_block(length)
        last = bytes(self.data[block * B : (block + 1) * B]) if block is not None else None
        self.replica.sync(version, length, seal=seal, last_block=last)
        del self.data[length:]

    def read(self, version: int, offset: int, length: int) -> bytes:
        start, end = self.replica.read_span(version, offset, length)
        return self.replica.verified_read(bytes(self.data[start:end]), start, offset, length)


def new(append_only: bool = False) -> Disk:
    return Disk(ChunkReplica.create(7, 1, CAP, B, append_only=append_only))


def test_sequential_writes_duplicates_and_gaps() -> None:
    disk = new()
    assert disk.write(1, 0, 0, b"a" * 100) is WriteOutcome.APPLIED
    assert disk.write(1, 0, 0, b"a" * 100) is WriteOutcome.DUPLICATE  # a retransmission: acknowledged again
    with pytest.raises(ConflictError, match="write 2 arrived before write 1") as info:
        disk.write(1, 2, 150, b"c")
    assert info.value.reason == "out_of_order"
    assert disk.write(1, 1, 100, b"b" * 50) is WriteOutcome.APPLIED
    assert disk.replica.record.length == 150 and disk.replica.record.checksums == block_checksums(bytes(disk.data), B)
    with pytest.raises(InvalidArgumentError, match="no holes"):
        disk.write(1, 2, 151, b"x")
    with pytest.raises(InvalidArgumentError, match="capacity"):
        disk.write(1, 2, 150, b"x" * CAP)


def test_random_overwrite_inside_the_chunk() -> None:
    disk = new()
    disk.write(1, 0, 0, bytes(range(200)))
    disk.write(1, 1, 10, b"XYZ", commit_through=200)
    assert disk.read(1, 0, 200) == bytes(range(10)) + b"XYZ" + bytes(range(13, 200))


def test_stale_writer_and_replica_behind_are_refused() -> None:
    disk = new()
    disk.write(1, 0, 0, b"a" * 10)
    disk.sync(2, 10)  # a new pipeline at version 2
    with pytest.raises(ConflictError, match="version 1 is stale, this replica is at version 2") as info:
        disk.write(1, 1, 10, b"old writer")
    assert info.value.reason == "stale_version"
    with pytest.raises(ConflictError, match="missed a pipeline sync") as info:
        disk.write(3, 0, 10, b"ahead")
    assert info.value.reason == "version_ahead"
    assert disk.write(2, 0, 10, b"b") is WriteOutcome.APPLIED  # sequence numbers restart with the version


def test_sync_truncates_unacknowledged_bytes_and_checks_what_the_replica_has() -> None:
    disk = new()
    disk.write(1, 0, 0, b"q" * 150, commit_through=0)
    disk.sync(2, 100)
    assert disk.replica.record.length == 100 and disk.replica.record.checksums == block_checksums(b"q" * 100, B)
    assert disk.replica.readable_length == 100
    with pytest.raises(ConflictError, match="has only 100 bytes, the pipeline agreed on 120"):
        disk.sync(3, 120)
    with pytest.raises(ConflictError, match="stale"):
        disk.sync(1, 50)


def test_seal_stops_appends_but_allows_overwrite_of_normal_chunks() -> None:
    disk = new()
    disk.write(1, 0, 0, b"n" * 100)
    disk.sync(1, 100, seal=True)  # sealed at the same version (the chunk was committed full or short)
    with pytest.raises(ConflictError, match="sealed at 100 bytes"):
        disk.write(1, 1, 100, b"more")
    disk.write(1, 1, 0, b"over")
    with pytest.raises(ConflictError, match="sealed at 100 bytes, cannot change to 90"):
        disk.sync(2, 90)
    disk.sync(2, 100)


def test_log_chunks_accept_appends_only_at_the_end() -> None:
    disk = new(append_only=True)
    disk.write(1, 0, 0, b"r1")
    with pytest.raises(ConflictError, match="append at offset 0, the chunk ends at 2") as info:
        disk.write(1, 1, 0, b"r2")
    assert info.value.expected_offset == 2
    disk.write(1, 1, 2, b"r2")
    disk.sync(1, 4, seal=True)
    with pytest.raises(ConflictError, match="sealed"):
        disk.write(1, 2, 0, b"x")


def test_readers_see_only_acknowledged_bytes_of_an_open_chunk() -> None:
    disk = new(append_only=True)
    disk.write(1, 0, 0, b"first")
    with pytest.raises(InvalidArgumentError, match="past its readable length 0"):
        disk.read(1, 0, 5)
    disk.write(1, 1, 5, b"second", commit_through=5)  # every replica acknowledged the first append
    assert disk.read(1, 0, 5) == b"first" and disk.replica.readable_length == 5
    disk.replica.commit_through(10**9)
    assert disk.replica.readable_length == 11  # never beyond what this replica has


def test_reads_check_versions_and_checksums() -> None:
    disk = new()
    disk.write(1, 0, 0, b"d" * 200, commit_through=200)
    with pytest.raises(ConflictError, match="the reader's locations are stale"):
        disk.sync(2, 200)
        disk.read(1, 0, 10)
    with pytest.raises(ConflictError, match="this replica is stale") as info:
        disk.read(3, 0, 10)
    assert info.value.reason == "stale_replica"
    disk.data[70] ^= 0xFF  # the disk rots
    assert disk.read(2, 0, 64) == b"d" * 64  # other blocks still verify
    with pytest.raises(DataCorruptionError, match="chunk 7: checksum mismatch in block 1"):
        disk.read(2, 60, 20)
    with pytest.raises(DataCorruptionError):
        disk.write(2, 0, 65, b"x")  # never merge new bytes into a corrupt block


def test_record_round_trip_and_bad_geometry() -> None:
    disk = new()
    disk.write(1, 0, 0, b"p" * 99, commit_through=99)
    record = msgspec.msgpack.decode(msgspec.msgpack.encode(disk.replica.record), type=ReplicaRecord)
    assert record == disk.replica.record
    again = ChunkReplica(record)
    assert again.readable_length == 99
    with pytest.raises(InvalidArgumentError, match="multiple of the block size"):
        ChunkReplica.create(1, 1, 100, 64)
