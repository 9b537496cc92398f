"""Snapshots from a leader to a follower in bounded chunks, resumable and checksummed (Raft §7's offset/done).

A leader's ``InstallSnapshot`` is never sent as one message: a snapshot may be far larger than a Kuafu message
may be (``max_body_bytes``, 16 MiB by default). The transport hands it to this peer's :class:`SnapshotSender`,
which sends ``raft.SnapshotChunk`` calls one after another, each with at most ``chunk_bytes`` of the snapshot as
the call's raw payload:

1. a first call without data asks the follower how much of *this* snapshot (index, term, size, crc32c) it
   already holds — a transfer that broke off resumes where it stopped;
2. chunks follow at the offsets the follower asks for (each reply names the next one), so a lost or repeated
   chunk is never written twice or skipped;
3. the last chunk (``done``) carries the ``InstallSnapshot`` message itself (without its data); the follower
   checks the size and the crc32c of what it received, and steps the message, with the data read back from its
   spool file, into its core — exactly as if it had arrived whole.

Memory is bounded on both ends: the sender reads the snapshot's file (a leader keeps snapshots' data on disk, not
in memory) and slices it (no copies); the receiver
writes each chunk to a spool file (``snapshot-incoming-*`` in the replica's data directory) on a worker thread
and reads it back once, whole, when it installs it (it must hold it then to restore its state machine).
Checksums run on worker threads too, so the event loop never stalls on a large snapshot. One transfer per peer
at a time: a second ``InstallSnapshot`` of the same snapshot while one is under way is ignored (the core re-sends
after its snapshot timeout); one of a newer snapshot replaces it. The leader tells its core how the transfer
ended (``report_snapshot``): a failure makes it probe the follower again later, and a new transfer resumes.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
from collections.abc import Awaitable, Callable

import msgspec
from crc32c import crc32c

from feitian.base.clock import Clock, MonotonicClock
from feitian.consensus import InstallSnapshot, Snapshot, SnapshotMeta
from feitian.errors import DataCorruptionError, FeitianError, InvalidArgumentError
from feitian.rpc import CallContext, Client, Request
from feitian.runtime.files import SpoolFile

log = logging.getLogger(__name__)

CHUNK_BYTES = 1 << 20  # snapshot bytes per call (the call's payload): well under Kuafu's bounds
CHUNK_TIMEOUT_S = 30.0  # one call, including the follower's write of the chunk
MAX_SNAPSHOT_BYTES = 64 << 30  # a receiver refuses to spool more (a bound, not an expectation)


class SnapshotChunkReply(msgspec.Struct, frozen=True):
    next_offset: int  # the offset the receiver wants next (== total_bytes after the last chunk: installed)


class SnapshotChunk(Request[SnapshotChunkReply], frozen=True, tag="raft.SnapshotChunk"):
    """Part of a snapshot for ``to_id``; the bytes travel as the call's payload, at ``offset``."""

    cluster: str
    from_id: int
    to_id: int
    term: int  # the leader's term
    index: int  # the snapshot's index and term: with total_bytes and crc, what identifies it
    snapshot_term: int
    total_bytes: int
    crc: int  # crc32c of the whole snapshot
    offset: int
    done: bool = False  # the payload ends the snapshot; ``message`` is set
    message: InstallSnapshot | None = None  # the leader's message, without its data


class SnapshotSender:
    """Sends one peer the leader's snapshots (see the module docstring)."""

    def __init__(
        self,
        cluster: str,
        peer_id: int,
        address: str,
        client: Client,
        report: Callable[[int, bool], None],
        load: Callable[[SnapshotMeta], Awaitable[bytes]] | None = None,
        *,
        chunk_bytes: int = CHUNK_BYTES,
        clock: Clock | None = None,
    ) -> None:
        self.cluster = cluster
        self.peer_id = peer_id
        self.address = address
        self.client = client
        self.report = report  # (peer id, failed)
        self.load = load  # the data of a snapshot whose message carries none (kept in a file, not in memory)
        self.chunk_bytes = chunk_bytes
        self.clock = clock or MonotonicClock()  # measures how long a transfer took
        self.task: asyncio.Task[None] | None = None
        self.sending: tuple[int, int] | None = None  # (index, term) of the snapshot under way
        self.sent = 0  # transfers completed
        self.bytes_sent = 0

    def start(self, message: InstallSnapshot) -> None:
        meta = message.snapshot.meta
        if self.task is not None and not self.task.done():
            if self.sending == (meta.index, meta.term):
                return  # already under way: the core re-sent it after its snapshot timeout
            self.task.cancel()
        self.sending = (meta.index, meta.term)
        self.task = asyncio.get_running_loop().create_task(self._send(message))

    async def _send(self, message: InstallSnapshot) -> None:
        loop = asyncio.get_running_loop()
        meta = message.snapshot.meta
        started = self.clock.monotonic_ns()
        try:
            data = message.snapshot.data
            if not data and self.load is not None:
                data = await self.load(meta)
            total = len(data)
            crc = await loop.run_in_executor(None, crc32c, data)
            bare = msgspec.structs.replace(message, snapshot=Snapshot(meta=meta))

            def chunk(offset: int, done: bool) -> SnapshotChunk:
                return SnapshotChunk(
                    cluster=self.cluster,
                    from_id=message.from_id,
                    to_id=message.to_id,
                    term=message.term,
                    index=meta.index,
                    snapshot_term=meta.term,
                    total_bytes=total,
                    crc=crc,
                    offset=offset,
                    done=done,
                    message=bare if done else None,
                )

            # A probe first: how much of this snapshot does the follower hold already?
            reply = await self.client.call(self.address, chunk(0, False), timeout=CHUNK_TIMEOUT_S)
            offset = reply.next_offset
            while True:
                if not 0 <= offset <= total:
                    raise DataCorruptionError(f"snapshot to replica {self.peer_id}: it asked for offset {offset}")
                size = min(self.chunk_bytes, total - offset)
                done = offset + size == total
                payload = memoryview(data)[offset : offset + size]
                reply = await self.client.call(
                    self.address, chunk(offset, done), payload=payload, timeout=CHUNK_TIMEOUT_S
                )
                self.bytes_sent += size
                if done and reply.next_offset == total:
                    break  # installed
                offset = reply.next_offset
            self.sent += 1
            log.info(
                "snapshot %d/%d (%d bytes) sent to replica %d in %.2fs",
                meta.index,
                meta.term,
                total,
                self.peer_id,
                (self.clock.monotonic_ns() - started) / 1e9,
            )
            self.report(self.peer_id, False)
        except asyncio.CancelledError:
            raise
        except FeitianError as exc:
            log.warning("snapshot %d/%d to replica %d failed: %s", meta.index, meta.term, self.peer_id, exc.message)
            self.report(self.peer_id, True)

    def close(self) -> None:
        if self.task is not None:
            self.task.cancel()


class _Incoming:
    def __init__(self, key: tuple[int, int, int, int], spool: SpoolFile) -> None:
        self.key = key
        self.spool = spool
        self.received = 0


class SnapshotReceiver:
    """The follower's side: spools chunks in ``directory`` and hands the whole message to ``deliver``."""

    def __init__(
        self,
        cluster: str,
        replica_id: int,
        directory: str,
        deliver: Callable[[InstallSnapshot], None],
        *,
        max_bytes: int = MAX_SNAPSHOT_BYTES,
    ) -> None:
        self.cluster = cluster
        self.replica_id = replica_id
        self.directory = directory
        self.deliver = deliver
        self.max_bytes = max_bytes
        self.incoming: _Incoming | None = None
        self.installed = 0
        self._lock = asyncio.Lock()  # chunks are written one at a time, in order

    async def handle(self, ctx: CallContext, req: SnapshotChunk) -> SnapshotChunkReply:
        if req.cluster != self.cluster or req.to_id != self.replica_id:
            raise InvalidArgumentError(
                f"raft.SnapshotChunk for replica {req.to_id} of {req.cluster!r} reached replica {self.replica_id} "
                f"of {self.cluster!r}"
            )
        if not 0 <= req.total_bytes <= self.max_bytes:
            raise InvalidArgumentError(
                f"raft.SnapshotChunk: a snapshot of {req.total_bytes} bytes exceeds this replica's bound "
                f"({self.max_bytes})"
            )
        async with self._lock:
            return await self._handle(req, bytes(ctx.payload) if ctx.payload else b"")

    async def _handle(self, req: SnapshotChunk, payload: bytes) -> SnapshotChunkReply:
        loop = asyncio.get_running_loop()
        key = (req.index, req.snapshot_term, req.total_bytes, req.crc)
        incoming = self.incoming
        if incoming is None or incoming.key != key:
            if incoming is not None:
                await loop.run_in_executor(None, incoming.spool.remove)
            name = f"snapshot-incoming-{req.snapshot_term:016x}-{req.index:016x}"
            incoming = self.incoming = _Incoming(key, SpoolFile(os.path.join(self.directory, name)))
            await loop.run_in_executor(None, incoming.spool.truncate)
        if req.offset != incoming.received:
            return SnapshotChunkReply(next_offset=incoming.received)  # a probe, a resend or a gap: say where
        if incoming.received + len(payload) > req.total_bytes:
            raise InvalidArgumentError("raft.SnapshotChunk: the chunk runs past the snapshot's size")
        if payload:
            await loop.run_in_executor(None, incoming.spool.write_at, incoming.received, payload)
            incoming.received += len(payload)
        if not req.done:
            return SnapshotChunkReply(next_offset=incoming.received)
        if incoming.received != req.total_bytes or req.message is None:
            raise InvalidArgumentError(
                f"raft.SnapshotChunk: done after {incoming.received} of {req.total_bytes} bytes"
                + ("" if req.message is not None else ", without its message")
            )
        self.incoming = None  # whatever happens now, the next transfer starts afresh
        try:
            data = await loop.run_in_executor(None, _read_checked, incoming.spool, req.total_bytes, req.crc)
        finally:
            await loop.run_in_executor(None, incoming.spool.remove)
        message = req.message
        self.deliver(msgspec.structs.replace(message, snapshot=Snapshot(meta=message.snapshot.meta, data=data)))
        self.installed += 1
        return SnapshotChunkReply(next_offset=req.total_bytes)

    def close(self) -> None:
        if self.incoming is not None:
            with contextlib.suppress(FeitianError):
                self.incoming.spool.remove()
            self.incoming = None


def _read_checked(spool: SpoolFile, size: int, crc: int) -> bytes:
    data = spool.read()
    if len(data) != size or crc32c(data) != crc:
        raise DataCorruptionError(
            f"snapshot spool {spool.path}: {len(data)} bytes with crc32c {crc32c(data):#010x}, expected {size} "
            f"bytes with {crc:#010x}",
            hint="the leader sends it again",
        )
    return data
