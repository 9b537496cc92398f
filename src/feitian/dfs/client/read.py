"""Reading a file (PANGU-4): locate its chunks, read pieces from a healthy replica, fail over, report corruption.

Replicas are tried in :func:`~feitian.dfs.core.read_order` (this machine, then this rack, then the rest; the
master lists replicas it believes healthy first). Every piece is verified by the chunk server against the
crc32c of each block. On a checksum mismatch the reader reports the replica to the master (which replaces it)
and reads another one; a replica that cannot be reached, lags behind, or no longer has the chunk is skipped;
a refused token is replaced with a fresh one; a chunk whose version moved on is located again.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Callable
from typing import TYPE_CHECKING, Any

from feitian.dfs.core import read_order
from feitian.dfs.messages.chunk import ChunkInfo, GetChunkInfo, ReadChunk
from feitian.dfs.messages.master import ChunkGrant, Locate, LocateReply, ReportCorrupt, Tokens
from feitian.dfs.presenter import is_token_refusal
from feitian.errors import (
    ConflictError,
    ConflictReason,
    DataCorruptionError,
    FeitianError,
    InvalidArgumentError,
    UnavailableError,
)

if TYPE_CHECKING:
    from feitian.dfs.client.client import DfsClient

__all__ = ["FileReader", "tail"]

log = logging.getLogger(__name__)
MAX_RELOCATES = 3
TAIL_SPAN = 1 << 50
Buffer = bytes | bytearray | memoryview  # "to the end of whatever is there" for locate(allow_tail=True)


class _Relocate(Exception):
    """The chunk's version moved on (a pipeline rebuilt, a copy): locate it again."""


class _Replaced(Exception):
    """The file read to its end was replaced (a rename over it) between its stat and its locate."""


MAX_REPLACED = 8  # a whole-file read that keeps meeting replacements gives up after this many tries


class FileReader:
    def __init__(self, dfs: DfsClient, path: str) -> None:
        self.dfs = dfs
        self.path = path
        self.avoid: set[str] = set()  # replicas that failed this reader
        self._expect: int | None = None  # the inode whose length sized a read to the end

    async def read(self, offset: int = 0, length: int = -1) -> bytes:
        """Bytes ``[offset, offset + length)``; ``length`` -1: to the end of the file — of one file: a file
        replaced while it is read (renamed over) is read again, so the bytes are never half of each."""
        for attempt in range(MAX_REPLACED):
            try:
                return await self._read_once(offset, await self._length(offset, length))
            except _Replaced:
                if attempt == MAX_REPLACED - 1:
                    raise UnavailableError(f"read {self.path}: it keeps being replaced while read; retry") from None
            finally:
                self._expect = None
        raise AssertionError("unreachable")

    async def _read_once(self, offset: int, length: int) -> bytes:
        parts: dict[int, Buffer] = {}

        def keep(at: int, data: Buffer) -> None:
            parts[at] = data

        await self._read(offset, length, keep)
        return b"".join(parts[at] for at in sorted(parts))

    async def read_into(self, offset: int, buffer: Any) -> int:
        """Fill ``buffer`` (a writable bytes-like object) with the bytes at ``offset``; returns how many (fewer
        at the end of the file). Reusing one buffer avoids allocating memory for every read."""
        view = memoryview(buffer).cast("B")
        status = await self.dfs.stat(self.path)
        if offset > status.length:
            raise InvalidArgumentError(
                f"read {self.path}: offset {offset} is past the end of the file (length {status.length})"
            )
        length = min(len(view), status.length - offset)

        def copy(at: int, data: Buffer) -> None:
            view[at : at + len(data)] = data

        await self._read(offset, length, copy)
        return length

    async def _length(self, offset: int, length: int) -> int:
        if offset < 0:
            raise InvalidArgumentError(f"read {self.path}: offset {offset} must be >= 0")
        if length < 0:
            status = await self.dfs.stat(self.path)
            if offset > status.length:
                raise InvalidArgumentError(
                    f"read {self.path}: offset {offset} is past the end of the file (length {status.length})"
                )
            length = status.length - offset
            self._expect = status.inode
        return length

    async def _read(self, offset: int, length: int, sink: Callable[[int, Buffer], None]) -> None:
        if length == 0:
            await self.dfs.master(Locate(self.path, offset, 0))  # the same checks: exists, is a file, in range
            return
        for attempt in range(MAX_RELOCATES + 1):
            try:
                located: LocateReply = await self.dfs.master(Locate(self.path, offset, length))
            except InvalidArgumentError:
                if self._expect is not None:  # sized by a stat of a file since replaced by a shorter one
                    raise _Replaced() from None
                raise
            if self._expect is not None and self._expect != located.file_id:
                raise _Replaced()  # sized by another file than the one located now (an append is fine)
            try:
                await self._read_located(located, offset, length, sink)
                return
            except _Relocate:
                if attempt == MAX_RELOCATES:
                    raise UnavailableError(f"read {self.path}: its chunks keep changing; retry") from None

    async def _read_located(
        self, located: LocateReply, offset: int, length: int, sink: Callable[[int, Buffer], None]
    ) -> None:
        end = offset + length
        piece = self.dfs.config.piece_bytes
        jobs = []
        for grant in located.chunks:
            loc = grant.location
            lo, hi = max(offset, loc.file_offset), min(end, loc.file_offset + loc.length)
            pos = lo
            while pos < hi:
                n = min(piece, hi - pos)
                jobs.append((grant, pos - loc.file_offset, n, pos - offset))
                pos += n
        limit = asyncio.Semaphore(self.dfs.config.read_window)
        state: dict[int, ChunkGrant] = {}

        async def one(grant: ChunkGrant, chunk_offset: int, n: int, at: int) -> None:
            async with limit:
                current = state.get(grant.location.chunk_id, grant)
                data, current = await self.read_piece(current, chunk_offset, n, grant.location.length)
                state[grant.location.chunk_id] = current
                sink(at, data)

        tasks = [asyncio.ensure_future(one(*job)) for job in jobs]
        try:
            await asyncio.gather(*tasks)
        finally:
            for task in tasks:
                task.cancel()

    async def read_piece(
        self, grant: ChunkGrant, chunk_offset: int, n: int, committed: int
    ) -> tuple[Buffer, ChunkGrant]:
        """``n`` bytes at ``chunk_offset`` of a chunk, from the first replica that serves them verified."""
        dfs = self.dfs
        racks = {s.server_id: s.rack for s in grant.servers}
        order = read_order(
            [s.server_id for s in grant.servers],
            rack_of=racks,
            local_server=dfs.config.local_server or None,
            local_rack=dfs.config.rack or None,
            avoid=self.avoid,
        )
        last: FeitianError | None = None
        for server_id in order:
            for _ in range(2):  # a second try with a fresh token
                index = next((i for i, s in enumerate(grant.servers) if s.server_id == server_id), -1)
                if index < 0:
                    break  # no longer a replica (the fresh grant does not list it)
                server = grant.servers[index]
                token = grant.tokens[index] if index < len(grant.tokens) else b""
                try:
                    await dfs.presenter.ensure(server.address, grant.location.chunk_id, grant.location.version, token)
                    request = ReadChunk(grant.location.chunk_id, grant.location.version, chunk_offset, n, committed)
                    reply = await dfs.rpc.call_full(server.address, request, timeout=dfs.config.io_timeout_s)
                    if len(reply.payload) != n:
                        raise DataCorruptionError(f"read chunk {grant.location.chunk_id}: {len(reply.payload)} of {n}")
                    return reply.payload, grant
                except FeitianError as exc:
                    last = exc
                    if is_token_refusal(exc):
                        grant = await dfs.master(Tokens(self.path, grant.location.chunk_id))
                        continue
                    if isinstance(exc, ConflictError) and exc.fields.get("reason") == ConflictReason.STALE_READER:
                        raise _Relocate() from None
                    if isinstance(exc, DataCorruptionError):
                        log.warning("read %s: %s on %s; reading another replica", self.path, exc, server_id)
                        await self._report(grant.location.chunk_id, server_id)
                    self.avoid.add(server_id)
                    break
        if last is None:
            raise UnavailableError(f"read {self.path}: chunk {grant.location.chunk_id} has no replica")
        if isinstance(last, DataCorruptionError | InvalidArgumentError):
            raise last
        raise UnavailableError(
            f"read {self.path}: no replica of chunk {grant.location.chunk_id} could serve bytes "
            f"[{chunk_offset}, {chunk_offset + n}): {last}",
            hint="chunk servers may be down; `feitian dfs fsck` shows missing chunks",
        )

    async def _report(self, chunk_id: int, server_id: str) -> None:
        try:
            await self.dfs.master(ReportCorrupt(self.path, chunk_id, server_id))
        except FeitianError as exc:
            log.warning("could not report corrupt chunk %d on %s: %s", chunk_id, server_id, exc)


async def _readable(dfs: DfsClient, path: str, grant: ChunkGrant) -> int:
    """How far a replica of the open last chunk lets readers go (acknowledged bytes)."""
    best = 0
    for index, server in enumerate(grant.servers):
        token = grant.tokens[index] if index < len(grant.tokens) else b""
        try:
            await dfs.presenter.ensure(server.address, grant.location.chunk_id, grant.location.version, token)
            info: ChunkInfo = await dfs.rpc.call(
                server.address, GetChunkInfo(grant.location.chunk_id, grant.location.version), timeout=5
            )
            best = max(best, info.readable_length)
        except FeitianError:
            continue
    return best


async def tail(dfs: DfsClient, path: str, offset: int, *, follow: bool, poll_s: float) -> AsyncIterator[bytes]:
    """See :meth:`feitian.dfs.DfsClient.tail`."""
    reader = FileReader(dfs, path)
    pos = offset
    while True:
        status = await dfs.stat(path)
        if pos < status.length:
            data = await reader.read(pos, status.length - pos)
            pos += len(data)
            yield data
            continue
        if status.lease_holder is not None:
            located: LocateReply = await dfs.master(Locate(path, status.length, TAIL_SPAN, allow_tail=True))
            if located.tail_open and located.chunks:
                grant = located.chunks[-1]
                start = grant.location.file_offset
                readable = await _readable(dfs, path, grant)
                if start <= pos < start + readable:
                    piece, _ = await reader.read_piece(grant, pos - start, start + readable - pos, 0)
                    pos += len(piece)
                    yield bytes(piece)
                    continue
        if not follow:
            return
        await dfs.clock.sleep(poll_s)
