"""The write-pipeline state of one chunk replica on a chunk server: version, expected offset and sequence,
visible length, sealed, and the checksum table.

Versions come from the master (in the chunk token) and change only through :meth:`ChunkReplica.sync`, the
first step of a new pipeline: a write carrying an older version is from a stale writer, one carrying a newer
version means this replica missed the sync (it is stale to the master) — both are refused. Within one version
the writer numbers its writes 0, 1, 2, …; a replica applies them strictly in order, answers a retransmitted
one as a duplicate without applying it again, and refuses a gap. Log chunks (``append_only``) accept a write
only at the current end.

``visible_length`` is how far readers may read an unsealed chunk: the writer sends ``commit_through`` (the end
of what every replica acknowledged) with later writes, so a reader tailing a log never sees bytes that might
still be dropped by a pipeline rebuild.
"""

from __future__ import annotations

import enum
from collections.abc import Mapping

import msgspec

from feitian.dfs.core.chunk_format import (
    BlockWrite,
    apply_block_write,
    plan_block_write,
    read_span,
    truncated_checksums,
    verified_slice,
)
from feitian.errors import ConflictError, ConflictReason, InvalidArgumentError

__all__ = ["ChunkReplica", "ReplicaRecord", "WriteOutcome"]


class WriteOutcome(enum.StrEnum):
    APPLIED = "applied"
    DUPLICATE = "duplicate"  # a retransmission of a write already applied: acknowledge it again


class ReplicaRecord(msgspec.Struct, array_like=True):
    """What a chunk server persists next to a chunk's data (with the same fsync)."""

    chunk_id: int
    version: int
    capacity_bytes: int
    block_size_bytes: int
    append_only: bool
    length: int = 0
    visible_length: int = 0
    sealed: bool = False
    next_seq: int = 0
    checksums: list[int] = msgspec.field(default_factory=list)


class ChunkReplica:
    def __init__(self, record: ReplicaRecord) -> None:
        if record.block_size_bytes <= 0 or record.capacity_bytes % record.block_size_bytes:
            raise InvalidArgumentError(
                f"chunk {record.chunk_id}: capacity {record.capacity_bytes} must be a multiple of the block size "
                f"{record.block_size_bytes}"
            )
        self.record = record

    @classmethod
    def create(
        cls, chunk_id: int, version: int, capacity_bytes: int, block_size_bytes: int, *, append_only: bool = False
    ) -> ChunkReplica:
        return cls(ReplicaRecord(chunk_id, version, capacity_bytes, block_size_bytes, append_only))

    @property
    def what(self) -> str:
        return f"chunk {self.record.chunk_id}"

    # -- writes --------------------------------------------------------------------------------------------------

    def _check_version(self, op: str, version: int) -> None:
        mine = self.record.version
        if version < mine:
            raise ConflictError(
                f"{op} {self.what}: version {version} is stale, this replica is at version {mine} (a newer write "
                "pipeline replaced that writer)",
                chunk_id=self.record.chunk_id,
                version=mine,
                reason=ConflictReason.STALE_VERSION,
            )
        if version > mine:
            raise ConflictError(
                f"{op} {self.what}: this replica is at version {mine}, behind {version}; it missed a pipeline sync",
                chunk_id=self.record.chunk_id,
                version=mine,
                reason=ConflictReason.VERSION_AHEAD,
            )

    def plan_write(self, version: int, seq: int, offset: int, length: int) -> BlockWrite | None:
        """Check a write; the blocks to read before :meth:`apply_write`, or None for a duplicate."""
        op = "write"
        r = self.record
        self._check_version(op, version)
        if seq < r.next_seq:
            return None
        if seq > r.next_seq:
            raise ConflictError(
                f"{op} {self.what}: write {seq} arrived before write {r.next_seq} (out of order)",
                expected_seq=r.next_seq,
                reason=ConflictReason.OUT_OF_ORDER,
            )
        if r.sealed and (r.append_only or offset + length > r.length):
            raise ConflictError(
                f"{op} {self.what}: the chunk is sealed at {r.length} bytes",
                length=r.length,
                reason=ConflictReason.SEALED,
            )
        if r.append_only and offset != r.length:
            raise ConflictError(
                f"{op} {self.what}: append at offset {offset}, the chunk ends at {r.length} (out of order)",
                expected_offset=r.length,
                reason=ConflictReason.OUT_OF_ORDER,
            )
        return plan_block_write(r.length, offset, length, r.capacity_bytes, r.block_size_bytes)

    def apply_write(
        self,
        version: int,
        seq: int,
        offset: int,
        data: bytes | bytearray | memoryview,
        old_blocks: Mapping[int, bytes],
        *,
        commit_through: int = -1,
    ) -> WriteOutcome:
        """Record a write whose bytes the caller stores (and fsyncs with :attr:`record`) before acknowledging."""
        if self.plan_write(version, seq, offset, len(data)) is None:
            self.commit_through(commit_through)
            return WriteOutcome.DUPLICATE
        r = self.record
        r.checksums, r.length = apply_block_write(
            r.checksums, r.length, offset, data, old_blocks, r.capacity_bytes, r.block_size_bytes, what=self.what
        )
        r.next_seq += 1
        self.commit_through(commit_through)
        return WriteOutcome.APPLIED

    def commit_through(self, end: int) -> None:
        """Every replica has bytes up to ``end``: readers may now see them."""
        r = self.record
        r.visible_length = max(r.visible_length, min(end, r.length))

    # -- a new pipeline, sealing ---------------------------------------------------------------------------------

    def sync_block(self, length: int) -> int | None:
        """The block whose old content :meth:`sync` needs to cut the chunk to ``length`` (None if none)."""
        r = self.record
        if length < r.length and length % r.block_size_bytes:
            return length // r.block_size_bytes
        return None

    def sync(self, version: int, length: int, *, seal: bool, last_block: bytes | None = None) -> None:
        """Join a new pipeline at ``version`` (or seal at the current one) with the agreed ``length``; bytes past it
        were never acknowledged and are dropped."""
        op = "sync"
        r = self.record
        if version < r.version:
            self._check_version(op, version)
        if length > r.length:
            raise ConflictError(
                f"{op} {self.what}: this replica has only {r.length} bytes, the pipeline agreed on {length}",
                length=r.length,
                reason=ConflictReason.MISSING_BYTES,
            )
        if r.sealed and length != r.length:
            raise ConflictError(
                f"{op} {self.what}: sealed at {r.length} bytes, cannot change to {length}", reason=ConflictReason.SEALED
            )
        r.checksums = truncated_checksums(r.checksums, r.length, length, last_block, r.block_size_bytes)
        if version != r.version:
            r.version, r.next_seq = version, 0
        r.length = length
        r.visible_length = length
        r.sealed = r.sealed or seal

    # -- reads ---------------------------------------------------------------------------------------------------

    @property
    def readable_length(self) -> int:
        """Sealed: its length. Unsealed: what every replica acknowledged (``visible_length``)."""
        return self.record.length if self.record.sealed else self.record.visible_length

    def read_span(self, version: int, offset: int, length: int, *, committed_length: int = 0) -> tuple[int, int]:
        """Check a read at ``version`` and return the block-aligned span to read from disk.

        ``committed_length`` is the chunk's length as the master committed it (the reader got it from
        ``locate``): every replica acknowledged those bytes, so they are readable even where this replica has
        not yet heard a ``commit_through`` covering them (a closed file's last chunk)."""
        r = self.record
        if version != r.version:
            stale = "the reader's locations are stale" if version < r.version else "this replica is stale"
            raise ConflictError(
                f"read {self.what}: version {version} requested, replica at {r.version} ({stale})",
                version=r.version,
                reason=ConflictReason.STALE_READER if version < r.version else ConflictReason.STALE_REPLICA,
            )
        readable = max(self.readable_length, min(committed_length, r.length))
        if offset + length > readable:
            raise InvalidArgumentError(
                f"read {self.what}: bytes [{offset}, {offset + length}) are past its readable length {readable}",
                readable_length=readable,
            )
        return read_span(r.length, offset, length, r.block_size_bytes)

    def verified_read(self, data: bytes, start: int, offset: int, length: int) -> bytes:
        """Verify the span read from disk (DataCorruptionError on a mismatch) and return the requested bytes."""
        r = self.record
        return verified_slice(data, start, offset, length, r.checksums, r.block_size_bytes, what=self.what)
