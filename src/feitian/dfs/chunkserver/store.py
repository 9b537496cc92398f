"""A chunk server's replicas: ordering, group fsync and verification on the event loop; file I/O on threads.

Every chunk is one :class:`~feitian.dfs.chunkserver.chunk_file.ChunkFile` under ``<dir>/chunks`` plus its pipeline state
(:class:`~feitian.dfs.core.ChunkReplica`). The rules:

* **Writes of one chunk apply one at a time, in sequence order.** A write that arrives before its predecessor
  waits for it (up to ``seq_wait_s``) instead of being refused: requests that travel different paths may
  overtake each other. The new record is computed on a copy and swapped in only after the bytes are written, so
  a failed write (a full disk) leaves the replica exactly as it was.
* **A write is acknowledged once it is durable**: its data and a record covering it are on disk (one
  ``fdatasync``). Writes that arrive while a sync runs share the next one (group commit per chunk).
* **Reads verify every block** they return against its crc32c; a mismatch marks the replica corrupt (it is
  reported to the master and never served again). Reads wait while a write *overwrites* existing bytes of the
  chunk, so they never see a block whose bytes and checksum disagree.
* **Copies** (repair, balance) arrive as pieces in a staging file and become a replica only when complete and
  durable (rename + directory fsync).
* A file that cannot be loaded at start-up is moved to ``<dir>/quarantine`` (never deleted) and not reported,
  so the master re-replicates the chunk.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import logging
import os
import shutil
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any, TypeVar

import msgspec
from crc32c import crc32c

from feitian.dfs.chunkserver.chunk_file import ChunkFile, ChunkGeometry
from feitian.dfs.core import ChunkReplica, ReplicaRecord, ReplicaReport, block_checksums, verify_blocks
from feitian.errors import (
    ConflictError,
    ConflictReason,
    DataCorruptionError,
    FeitianError,
    InvalidArgumentError,
    NotFoundError,
    NotFoundReason,
    UnavailableError,
    UnavailableReason,
)
from feitian.runtime.files import ensure_dir, fsync_dir, remove_durably, translating

__all__ = ["ChunkStore", "StoreConfig", "StoredChunk"]

log = logging.getLogger(__name__)
T = TypeVar("T")
Buffer = bytes | bytearray | memoryview


class StoreConfig(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    capacity_bytes: int = 0  # 0: the size of the filesystem holding the store
    io_threads: int = 4
    seq_wait_s: float = 10.0  # how long a write waits for the write before it (sent by another path)


class StoredChunk:
    """One replica: its file, its pipeline state, and the asyncio primitives that order access to it."""

    def __init__(self, file: ChunkFile, replica: ChunkReplica) -> None:
        self.file = file
        self.replica = replica
        self.lock = asyncio.Lock()  # one mutation at a time
        self.progress = asyncio.Condition()  # notified after every mutation (writes waiting for their turn)
        self.mutations = 0
        self.durable = 0  # mutations covered by a completed sync
        self.syncing: asyncio.Task[None] | None = None
        self.readers = 0
        self.overwriting = False
        self.gate = asyncio.Condition()
        self.corrupt = False
        self.deleted = False

    @property
    def chunk_id(self) -> int:
        return self.replica.record.chunk_id

    def report(self) -> ReplicaReport:
        r = self.replica.record
        return ReplicaReport(r.chunk_id, r.version, r.length)

    async def begin_read(self) -> None:
        async with self.gate:
            await self.gate.wait_for(lambda: not self.overwriting)
            self.readers += 1

    async def end_read(self) -> None:
        async with self.gate:
            self.readers -= 1
            self.gate.notify_all()

    @contextlib.asynccontextmanager
    async def exclusive(self, overwrite: bool) -> Any:
        """Held while a mutation may rewrite existing bytes: waits for reads in flight, holds new ones back."""
        if not overwrite:
            yield
            return
        async with self.gate:
            self.overwriting = True
            await self.gate.wait_for(lambda: self.readers == 0)
        try:
            yield
        finally:
            async with self.gate:
                self.overwriting = False
                self.gate.notify_all()


class _Staging:
    def __init__(self, file: ChunkFile, version: int, sealed: bool) -> None:
        self.file = file
        self.version = version
        self.sealed = sealed
        self.received = 0
        self.checksums: list[int] = []
        self.lock = asyncio.Lock()


def _copy(record: ReplicaRecord) -> ReplicaRecord:
    return msgspec.structs.replace(record, checksums=list(record.checksums))


class ChunkStore:
    def __init__(self, directory: str | os.PathLike[str], config: StoreConfig | None = None) -> None:
        self.dir = Path(directory)
        self.config = config or StoreConfig()
        self.chunks_dir = self.dir / "chunks"
        self.staging_dir = self.dir / "staging"
        self.quarantine_dir = self.dir / "quarantine"
        self.chunks: dict[int, StoredChunk] = {}
        self.staging: dict[int, _Staging] = {}
        self.changed: set[int] = set()  # chunks whose report changed since the master last heard
        self.creating: dict[int, asyncio.Future[StoredChunk]] = {}
        self.executor = concurrent.futures.ThreadPoolExecutor(self.config.io_threads, thread_name_prefix="chunk-io")

    # -- lifecycle -----------------------------------------------------------------------------------------------

    async def open(self) -> list[str]:
        """Load every replica; returns the names of quarantined files."""
        return await self._io(self._open_sync)

    def _open_sync(self) -> list[str]:
        for d in (self.chunks_dir, self.staging_dir):
            ensure_dir(d)
        with translating("clean", self.staging_dir):
            for leftover in self.staging_dir.iterdir():  # copies cut short by a crash: the master copies again
                leftover.unlink()
        quarantined = []
        for path in sorted(self.chunks_dir.glob("*.chunk")):
            try:
                file, replica = ChunkFile.load(path)
            except FeitianError as exc:
                log.error("quarantining %s: %s", path, exc)
                ensure_dir(self.quarantine_dir)
                with translating("quarantine", path):
                    shutil.move(str(path), self.quarantine_dir / path.name)
                quarantined.append(path.name)
                continue
            self.chunks[replica.record.chunk_id] = StoredChunk(file, replica)
        return quarantined

    async def close(self) -> None:
        for chunk in self.chunks.values():
            chunk.file.close()
        for staging in self.staging.values():
            staging.file.close()
        self.executor.shutdown(wait=True)

    async def _io(self, fn: Callable[..., T], *args: Any) -> T:
        return await asyncio.get_running_loop().run_in_executor(self.executor, fn, *args)

    def path_of(self, chunk_id: int) -> Path:
        return self.chunks_dir / f"{chunk_id}.chunk"

    # -- lookups -------------------------------------------------------------------------------------------------

    def get(self, op: str, chunk_id: int) -> StoredChunk:
        chunk = self.chunks.get(chunk_id)
        if chunk is None:
            raise NotFoundError(f"{op} chunk {chunk_id}: no replica on this server", chunk_id=chunk_id)
        return chunk

    def report(self) -> list[ReplicaReport]:
        return [c.report() for c in self.chunks.values()]

    def take_changed(self) -> list[ReplicaReport]:
        ids, self.changed = self.changed, set()
        return [self.chunks[i].report() for i in sorted(ids) if i in self.chunks]

    def used_bytes(self) -> int:
        return sum(c.file.geometry.data_offset + c.replica.record.length for c in self.chunks.values())

    def usage(self) -> tuple[int, int]:
        """(capacity, used) bytes: capacity is the configured one (or the filesystem size), lowered to what
        fits — used plus the filesystem's free space — so a full disk shows as full."""
        used = self.used_bytes()
        stat = os.statvfs(self.dir)
        free = stat.f_bavail * stat.f_frsize
        configured = self.config.capacity_bytes or stat.f_blocks * stat.f_frsize
        return max(1, min(configured, used + free)), used

    # -- durability ----------------------------------------------------------------------------------------------

    async def _durable(self, chunk: StoredChunk, target: int) -> None:
        """Wait until mutation ``target`` is covered by a sync (starting one if none runs)."""
        while chunk.durable < target:
            if chunk.syncing is None:
                record, upto = _copy(chunk.replica.record), chunk.mutations
                chunk.syncing = asyncio.get_running_loop().create_task(self._sync(chunk, record, upto))
            await asyncio.shield(chunk.syncing)

    async def _sync(self, chunk: StoredChunk, record: ReplicaRecord, upto: int) -> None:
        try:
            await self._io(chunk.file.sync, record)
            chunk.durable = max(chunk.durable, upto)
        finally:
            chunk.syncing = None

    async def _mutated(self, chunk: StoredChunk, replica: ChunkReplica) -> int:
        chunk.replica = replica
        chunk.mutations += 1
        self.changed.add(chunk.chunk_id)
        async with chunk.progress:
            chunk.progress.notify_all()
        return chunk.mutations

    # -- writes --------------------------------------------------------------------------------------------------

    async def _create(self, geometry: ChunkGeometry, version: int) -> StoredChunk:
        """The replica of a new chunk (its first writes may arrive together: one creates, the others wait)."""
        creating = self.creating.get(geometry.chunk_id)
        if creating is not None:
            return await asyncio.shield(creating)
        future: asyncio.Future[StoredChunk] = asyncio.get_running_loop().create_future()
        self.creating[geometry.chunk_id] = future
        try:
            chunk = await self._create_file(geometry, version)
            future.set_result(chunk)
            return chunk
        except BaseException as exc:
            if isinstance(exc, Exception):
                future.set_exception(exc)
                future.exception()
            else:
                future.cancel()
            raise
        finally:
            del self.creating[geometry.chunk_id]

    async def create_empty(self, geometry: ChunkGeometry, version: int) -> None:
        """An empty replica at ``version`` (a pipeline agreed on 0 bytes before this server got any)."""
        if geometry.chunk_id not in self.chunks:
            await self._create_file(geometry, version, any_version=True)

    async def _create_file(self, geometry: ChunkGeometry, version: int, *, any_version: bool = False) -> StoredChunk:
        if version != 1 and not any_version:
            raise NotFoundError(
                f"write chunk {geometry.chunk_id} v{version}: no replica on this server (only a new chunk, at "
                "version 1, is created by its first write)",
                chunk_id=geometry.chunk_id,
                reason=NotFoundReason.NO_REPLICA,
            )
        replica = ChunkReplica.create(
            geometry.chunk_id,
            version,
            geometry.capacity_bytes,
            geometry.block_size_bytes,
            append_only=geometry.append_only,
        )
        file = await self._io(ChunkFile.create, self.path_of(geometry.chunk_id), geometry, replica.record)
        chunk = self.chunks[geometry.chunk_id] = StoredChunk(file, replica)
        self.changed.add(geometry.chunk_id)
        return chunk

    async def write(
        self, geometry: ChunkGeometry, version: int, seq: int, offset: int, data: Buffer, commit_through: int
    ) -> tuple[int, bool]:
        """Apply write ``seq`` of ``version`` and wait until it is durable: (chunk length, was a duplicate)."""
        chunk = self.chunks.get(geometry.chunk_id)
        if chunk is None:
            chunk = await self._create(geometry, version)
        await self._wait_turn(chunk, version, seq)
        async with chunk.lock:
            if chunk.deleted:
                raise NotFoundError(f"write chunk {geometry.chunk_id}: the replica was deleted")
            current = chunk.replica
            plan = current.plan_write(version, seq, offset, len(data))
            if plan is None:  # a retransmission: acknowledge it again once durable
                current.commit_through(commit_through)
                target = chunk.mutations
            else:
                length = current.record.length
                async with chunk.exclusive(overwrite=offset < length):
                    tentative = ChunkReplica(_copy(current.record))
                    await self._io(self._apply_write, chunk, tentative, version, seq, offset, data, commit_through)
                    target = await self._mutated(chunk, tentative)
        await self._durable(chunk, target)
        return chunk.replica.record.length, plan is None

    def _apply_write(
        self,
        chunk: StoredChunk,
        tentative: ChunkReplica,
        version: int,
        seq: int,
        offset: int,
        data: Buffer,
        commit_through: int,
    ) -> None:
        old_length = tentative.record.length
        plan = tentative.plan_write(version, seq, offset, len(data))
        assert plan is not None
        old = chunk.file.read_blocks(plan.old_blocks, old_length)
        tentative.apply_write(version, seq, offset, data, old, commit_through=commit_through)
        try:
            chunk.file.pwrite(offset, data)
        except FeitianError:
            if offset + len(data) > old_length:
                with contextlib.suppress(FeitianError):
                    chunk.file.truncate_data(max(old_length, offset))  # give back what the failed write took
            raise

    async def _wait_turn(self, chunk: StoredChunk, version: int, seq: int) -> None:
        """A write that overtook its predecessor waits for it (bounded)."""
        record = chunk.replica.record
        if record.version != version or seq <= record.next_seq:
            return
        async with chunk.progress:
            with contextlib.suppress(TimeoutError):  # then plan_write refuses it with a clear out-of-order error
                await asyncio.wait_for(
                    chunk.progress.wait_for(
                        lambda: chunk.replica.record.version != version or chunk.replica.record.next_seq >= seq
                    ),
                    self.config.seq_wait_s,
                )

    async def sync(self, chunk_id: int, version: int, length: int, seal: bool) -> ReplicaRecord:
        """Join a new pipeline at ``version`` (or seal) with the agreed ``length``; durable on return."""
        chunk = self.get("sync", chunk_id)
        async with chunk.lock:
            current = chunk.replica
            block = current.sync_block(length)
            last = None
            if block is not None:
                last = (await self._io(chunk.file.read_blocks, (block,), current.record.length))[block]
            tentative = ChunkReplica(_copy(current.record))
            tentative.sync(version, length, seal=seal, last_block=last)
            async with chunk.exclusive(overwrite=True):
                target = await self._mutated(chunk, tentative)
        await self._durable(chunk, target)
        return _copy(chunk.replica.record)

    def commit(self, chunk_id: int, version: int, end: int) -> int:
        """Readers may see bytes up to ``end`` (every replica has them); returns the readable length."""
        chunk = self.get("commit", chunk_id)
        if chunk.replica.record.version == version:
            chunk.replica.commit_through(end)
        return chunk.replica.readable_length

    # -- reads ---------------------------------------------------------------------------------------------------

    async def read(self, chunk_id: int, version: int, offset: int, length: int, committed_length: int) -> bytes:
        chunk = self.get("read", chunk_id)
        if chunk.corrupt:
            raise DataCorruptionError(f"read chunk {chunk_id}: this replica failed its checksums", chunk_id=chunk_id)
        await chunk.begin_read()
        try:
            replica = chunk.replica
            start, end = replica.read_span(version, offset, length, committed_length=committed_length)
            return await self._io(self._read_verified, chunk, replica, start, end, offset, length)
        except DataCorruptionError:
            chunk.corrupt = True
            raise
        finally:
            await chunk.end_read()

    @staticmethod
    def _read_verified(
        chunk: StoredChunk, replica: ChunkReplica, start: int, end: int, offset: int, length: int
    ) -> bytes:
        return replica.verified_read(chunk.file.pread(start, end - start), start, offset, length)

    async def scrub(self, chunk_id: int, step_bytes: int) -> int:
        """Re-verify every stored block of a replica; returns bytes checked (DataCorruptionError marks it)."""
        chunk = self.get("scrub", chunk_id)
        checked = 0
        while not chunk.deleted:
            await chunk.begin_read()
            try:
                record = chunk.replica.record
                block = record.block_size_bytes
                step = max(block, step_bytes - step_bytes % block)
                if checked >= record.length:
                    break
                end = min(record.length, checked + step)
                data = await self._io(chunk.file.pread, checked, end - checked)
                verify_blocks(data, checked, record.checksums, block, what=f"chunk {chunk_id}")
                checked = end
            except DataCorruptionError:
                chunk.corrupt = True
                raise
            finally:
                await chunk.end_read()
        return checked

    # -- copies (repair, balance) --------------------------------------------------------------------------------

    async def put(
        self,
        geometry: ChunkGeometry,
        version: int,
        offset: int,
        data: Buffer,
        crc: int,
        total_length: int,
        sealed: bool,
    ) -> bool:
        """Receive one piece of a copy (in order); the last piece makes the replica. True when complete."""
        chunk_id = geometry.chunk_id
        if crc32c(data) != crc:
            raise DataCorruptionError(f"copy of chunk {chunk_id}: piece at {offset} damaged in transit")
        if offset == 0:
            old = self.staging.pop(chunk_id, None)
            if old is not None:
                await self._io(old.file.close)
            record = ReplicaRecord(
                chunk_id, version, geometry.capacity_bytes, geometry.block_size_bytes, geometry.append_only
            )
            path = self.staging_dir / f"{chunk_id}.v{version}.tmp"
            file = await self._io(ChunkFile.create, path, geometry, record)
            self.staging[chunk_id] = _Staging(file, version, sealed)
        staging = self.staging.get(chunk_id)
        if staging is None or staging.version != version:
            raise ConflictError(
                f"copy of chunk {chunk_id}: no copy of v{version} in progress", reason=ConflictReason.NO_COPY
            )
        async with staging.lock:
            if offset != staging.received or offset + len(data) > total_length:
                raise ConflictError(
                    f"copy of chunk {chunk_id}: piece at {offset}, expected {staging.received}",
                    reason=ConflictReason.OUT_OF_ORDER,
                )
            block = geometry.block_size_bytes
            if len(data) % block and offset + len(data) != total_length:
                raise InvalidArgumentError(f"copy of chunk {chunk_id}: pieces must be whole blocks but the last")
            try:
                await self._io(staging.file.pwrite, offset, data)
            except FeitianError:
                self.staging.pop(chunk_id, None)
                await self._io(self._discard, staging.file)
                raise
            staging.checksums.extend(block_checksums(bytes(data), block) if data else [])
            staging.received += len(data)
            if staging.received < total_length:
                return False
            self.staging.pop(chunk_id, None)
            record = ReplicaRecord(
                chunk_id,
                version,
                geometry.capacity_bytes,
                block,
                geometry.append_only,
                length=total_length,
                visible_length=total_length,
                sealed=staging.sealed,
                checksums=staging.checksums,
            )
            await self._install(staging.file, ChunkReplica(record))
        return True

    async def _install(self, file: ChunkFile, replica: ChunkReplica) -> None:
        chunk_id = replica.record.chunk_id
        old = self.chunks.pop(chunk_id, None)
        if old is not None:
            old.deleted = True
        target = self.path_of(chunk_id)

        def finish() -> None:
            file.sync(replica.record)
            with translating("rename", target):
                os.replace(file.path, target)
            fsync_dir(self.chunks_dir)
            fsync_dir(self.staging_dir)
            if old is not None:
                old.file.close()

        try:
            await self._io(finish)
        except FeitianError:
            await self._io(self._discard, file)
            raise
        file.path = target
        self.chunks[chunk_id] = StoredChunk(file, replica)
        self.changed.add(chunk_id)

    @staticmethod
    def _discard(file: ChunkFile) -> None:
        file.close()
        with contextlib.suppress(OSError):
            file.path.unlink()

    # -- deletion ------------------------------------------------------------------------------------------------

    async def delete(self, chunk_ids: Iterable[int]) -> list[int]:
        """Delete replicas (the master's garbage); returns those that existed."""
        gone: list[StoredChunk] = []
        for chunk_id in chunk_ids:
            chunk = self.chunks.pop(chunk_id, None)
            if chunk is None:
                continue
            async with chunk.lock:
                chunk.deleted = True
            gone.append(chunk)
            self.changed.discard(chunk_id)
        if gone:

            def remove() -> None:
                for chunk in gone:
                    chunk.file.close()
                remove_durably([c.file.path for c in gone])

            await self._io(remove)
        return [c.chunk_id for c in gone]

    def check_space(self, nbytes: int) -> None:
        """Refuse early (UnavailableError, disk_full) when the filesystem cannot take ``nbytes`` more."""
        stat = os.statvfs(self.dir)
        if stat.f_bavail * stat.f_frsize < nbytes:
            raise UnavailableError(
                f"write {self.dir}: disk full (no space left on device)",
                hint=f"free space on the filesystem holding {self.dir}",
                reason=UnavailableReason.DISK_FULL,
                path=str(self.dir),
            )
