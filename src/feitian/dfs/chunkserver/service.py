"""A Pangu chunk server (PANGU-2, PANGU-4): serves its replicas to clients, the master and other servers.

``chunk.Write`` stores the payload and forwards it to the next replica of the pipeline at the same time; it
answers only when this replica and every one after it has the bytes durably. ``chunk.Read`` verifies every
block it returns. ``chunk.Copy`` (from the master) streams a replica to another server (``chunk.Put``), which
installs it once complete. Heartbeats, reports and the scrubber run in
:mod:`~feitian.dfs.chunkserver.loops`.
"""

from __future__ import annotations

import asyncio
from typing import Any

from crc32c import crc32c

from feitian.base.clock import Clock
from feitian.base.units import MiB
from feitian.dfs.chunkserver.store import ChunkStore
from feitian.dfs.messages.chunk import (
    ADMIN_READ,
    ADMIN_WRITE,
    READ_RULE,
    SYNC_RULE,
    WRITE_RULE,
    ChainLink,
    ChunkInfo,
    ChunkServerStats,
    CommitThrough,
    CopyChunk,
    CopyReply,
    GetChunkInfo,
    GetStats,
    PutChunk,
    ReadChunk,
    SyncChunk,
    WriteChunk,
    WriteReply,
)
from feitian.dfs.presenter import TokenPresenter
from feitian.errors import ConflictError, ConflictReason, DataCorruptionError, FeitianError, InternalError
from feitian.rpc import CallContext, Client, Server

__all__ = ["BULK_LANE", "ChunkService"]

BULK_LANE = "bulk"
PIECE_BYTES = 4 * MiB  # copies move chunks in pieces of this size (rounded to whole blocks)
FORWARD_TIMEOUT_S = 60.0


def _tag(exc: FeitianError, server_id: str) -> FeitianError:
    """Name the replica that failed, so the writer knows which one to leave out of the next pipeline."""
    exc.fields.setdefault("failed_server", server_id)
    return exc


class ChunkService:
    def __init__(self, server_id: str, rack: str, store: ChunkStore, client: Client, *, clock: Clock) -> None:
        self.server_id = server_id
        self.clock = clock
        self.rack = rack
        self.store = store
        self.client = client
        self.presenter = TokenPresenter(client)
        self.corrupt_found: set[int] = set()  # found by reads or the scrubber, not yet told to the master
        self.scrubbed_bytes = 0
        self.scrub_passes = 0
        self.quarantined: list[str] = []

    def register(self, server: Server) -> None:
        server.add_handler(WriteChunk, self.write, lane=BULK_LANE, requires=WRITE_RULE)
        server.add_handler(ReadChunk, self.read, lane=BULK_LANE, requires=READ_RULE)
        server.add_handler(PutChunk, self.put, lane=BULK_LANE, requires=WRITE_RULE)
        server.add_handler(GetChunkInfo, self.info, requires=READ_RULE)
        server.add_handler(SyncChunk, self.sync, requires=SYNC_RULE)
        server.add_handler(CommitThrough, self.commit, requires=SYNC_RULE)
        server.add_handler(CopyChunk, self.copy, requires=ADMIN_WRITE)
        server.add_handler(GetStats, self.stats, requires=ADMIN_READ)

    # -- the write pipeline --------------------------------------------------------------------------------------

    async def write(self, ctx: CallContext, req: WriteChunk) -> WriteReply:
        data = ctx.payload
        local = asyncio.ensure_future(
            self.store.write(req.chunk, req.version, req.seq, req.offset, data, req.commit_through)
        )
        forward = asyncio.ensure_future(self._forward(req, data)) if req.downstream else None
        waiting = [local] if forward is None else [local, forward]
        await asyncio.wait(waiting)
        if local.exception() is not None:
            if forward is not None:
                forward.exception()  # retrieved: the local failure is the one to report
            raise self._local_failure(local.exception())
        if forward is not None and forward.exception() is not None:
            exc = forward.exception()
            if isinstance(exc, FeitianError):
                raise _tag(exc, req.downstream[0].server_id)
            raise InternalError(
                f"forward to {req.downstream[0].server_id}: {exc!r}", failed_server=req.downstream[0].server_id
            )
        length, duplicate = local.result()
        return WriteReply(length, duplicate)

    def _local_failure(self, exc: BaseException | None) -> FeitianError:
        if isinstance(exc, FeitianError):
            return _tag(exc, self.server_id)
        return InternalError(f"write on {self.server_id}: {exc!r}", failed_server=self.server_id)

    async def _forward(self, req: WriteChunk, data: Any) -> WriteReply:
        link: ChainLink = req.downstream[0]
        chunk_id = req.chunk.chunk_id
        try:
            await self.presenter.ensure(link.address, chunk_id, req.version, link.token)
        except FeitianError as exc:
            raise _tag(exc, link.server_id) from None
        request = WriteChunk(req.chunk, req.version, req.seq, req.offset, req.commit_through, req.downstream[1:])
        reply: WriteReply = await self.client.call(link.address, request, payload=data, timeout=FORWARD_TIMEOUT_S)
        return reply

    # -- reads and state -----------------------------------------------------------------------------------------

    async def read(self, ctx: CallContext, req: ReadChunk) -> int:
        try:
            data = await self.store.read(req.chunk_id, req.version, req.offset, req.length, req.committed_length)
        except DataCorruptionError:
            self.corrupt_found.add(req.chunk_id)
            raise
        ctx.reply_payload = data
        return len(data)

    def _info(self, chunk_id: int) -> ChunkInfo:
        chunk = self.store.get("info", chunk_id)
        r = chunk.replica.record
        return ChunkInfo(r.chunk_id, r.version, r.length, chunk.replica.readable_length, r.sealed, chunk.corrupt)

    async def info(self, ctx: CallContext, req: GetChunkInfo) -> ChunkInfo:
        return self._info(req.chunk_id)

    async def commit(self, ctx: CallContext, req: CommitThrough) -> None:
        self.store.commit(req.chunk_id, req.version, req.end)

    async def sync(self, ctx: CallContext, req: SyncChunk) -> ChunkInfo:
        if req.chunk_id not in self.store.chunks and req.length == 0 and req.chunk is not None:
            await self.store.create_empty(req.chunk, req.version)  # its first write never got here
        await self.store.sync(req.chunk_id, req.version, req.length, req.seal)
        return self._info(req.chunk_id)

    # -- copies --------------------------------------------------------------------------------------------------

    async def put(self, ctx: CallContext, req: PutChunk) -> bool:
        return await self.store.put(
            req.chunk, req.version, req.offset, ctx.payload, req.crc, req.total_length, req.sealed
        )

    async def copy(self, ctx: CallContext, req: CopyChunk) -> CopyReply:
        """Stream the first ``req.length`` bytes of this replica to the target, reading ahead one piece."""
        started = self.clock.monotonic_ns()
        chunk_id = req.chunk.chunk_id
        chunk = self.store.get("copy", chunk_id)
        if chunk.replica.record.version != req.version:
            raise ConflictError(
                f"copy chunk {chunk_id}: this replica is v{chunk.replica.record.version}, not v{req.version}",
                reason=ConflictReason.STALE_REPLICA,
            )
        target_version = req.target_version or req.version
        await self.presenter.ensure(req.target_address, chunk_id, target_version, req.target_token)
        block = req.chunk.block_size_bytes
        piece = max(block, PIECE_BYTES - PIECE_BYTES % block)
        total = req.length

        def read(offset: int) -> asyncio.Future[bytes]:
            n = min(piece, total - offset)
            return asyncio.ensure_future(self.store.read(chunk_id, req.version, offset, n, total))

        offset = 0
        pending = read(0) if total else None
        try:
            while True:
                data = await pending if pending is not None else b""
                nxt = offset + len(data)
                pending = read(nxt) if nxt < total else None
                put = PutChunk(req.chunk, target_version, offset, crc32c(data), total, req.sealed)
                await self.client.call(req.target_address, put, payload=data, timeout=FORWARD_TIMEOUT_S)
                offset = nxt
                if offset >= total:
                    break
        except DataCorruptionError:
            self.corrupt_found.add(chunk_id)
            raise
        finally:
            if pending is not None:
                pending.cancel()
        return CopyReply(total, round((self.clock.monotonic_ns() - started) / 1e9, 3))

    async def stats(self, ctx: CallContext, req: GetStats) -> ChunkServerStats:
        capacity, used = self.store.usage()
        return ChunkServerStats(
            self.server_id,
            self.rack,
            len(self.store.chunks),
            used,
            capacity,
            tuple(sorted(c.chunk_id for c in self.store.chunks.values() if c.corrupt)),
            self.scrubbed_bytes,
            self.scrub_passes,
            tuple(self.quarantined),
        )
