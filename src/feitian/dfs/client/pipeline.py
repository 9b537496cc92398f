"""The writes in flight to one chunk at one version: a replica pipeline (normal files) or a fan-out to every
replica in parallel (log files).

Writes are numbered 0, 1, 2, ... per version and carry the chunk offset; up to ``write_window`` are in flight.
A write is acknowledged when every replica has it durably, and replicas apply writes in order, so an
acknowledged write means every earlier one is durable too: ``acked`` is the end of the highest acknowledged
write. The first failure stops new sends; :meth:`ChunkPipeline.settle` waits for the rest and says what went
wrong (:class:`PipelineFailure`), and the file writer recovers (docs/dfs.md, "When a replica fails").
"""

from __future__ import annotations

import asyncio
from collections import deque
from typing import TYPE_CHECKING, Any

from feitian.dfs.messages.chunk import ChainLink, CommitThrough, WriteChunk, WriteReply
from feitian.dfs.messages.master import ChunkGrant
from feitian.dfs.presenter import is_token_refusal
from feitian.errors import (
    ConflictError,
    ConflictReason,
    DeadlineExceededError,
    FeitianError,
    InternalError,
    UnavailableError,
)

if TYPE_CHECKING:
    from feitian.dfs.client.client import DfsClient

__all__ = ["ChunkPipeline", "PipelineFailure"]

Buffer = bytes | bytearray | memoryview
_FATAL_REASONS = frozenset(
    {
        ConflictReason.STALE_VERSION,
        ConflictReason.STALE_LEASE,
        ConflictReason.NO_LEASE,
        ConflictReason.LEASE_EXPIRED,
        ConflictReason.SEALED,
    }
)


class PipelineFailure(Exception):
    """What went wrong with a pipeline: replicas that failed, a refused token, or an error the writer cannot
    recover from (``fatal``: it goes to the application)."""

    def __init__(self, failed: set[str], token_refused: bool, fatal: BaseException | None) -> None:
        super().__init__(f"pipeline failed: servers {sorted(failed)}, token refused {token_refused}, {fatal!r}")
        self.failed = failed
        self.token_refused = token_refused
        self.fatal = fatal


class _Piece:
    __slots__ = ("data", "offset", "seq", "task")

    def __init__(self, seq: int, offset: int, data: Buffer) -> None:
        self.seq = seq
        self.offset = offset
        self.data = data
        self.task: asyncio.Task[None] | None = None

    @property
    def end(self) -> int:
        return self.offset + len(self.data)


def _classify(errors: list[BaseException], primary: str) -> PipelineFailure:
    failed: set[str] = set()
    token = False
    fatal: BaseException | None = None
    for exc in errors:
        if is_token_refusal(exc):
            token = True
            continue
        if isinstance(exc, ConflictError) and exc.fields.get("reason") in _FATAL_REASONS:
            fatal = fatal or exc  # another writer took over, or the chunk changed under us
            continue
        if isinstance(exc, FeitianError):
            named = exc.fields.get("failed_server")
            if named:
                failed.add(str(named))
                continue
            if isinstance(exc, UnavailableError | DeadlineExceededError):
                failed.add(primary)  # could not reach (or hear back from) the first replica
                continue
        fatal = fatal or exc
    return PipelineFailure(failed, token, fatal)


class ChunkPipeline:
    def __init__(self, dfs: DfsClient, grant: ChunkGrant, length: int, *, parallel: bool) -> None:
        self.dfs = dfs
        self.grant = grant
        self.parallel = parallel
        self.next_seq = 0
        self.length = length  # end of what was sent (or was there)
        self.acked = length  # every replica has everything up to here durably
        self.pieces: deque[_Piece] = deque()  # not yet acknowledged, in order
        self.errors: list[BaseException] = []

    @property
    def chunk_id(self) -> int:
        return self.grant.location.chunk_id

    @property
    def version(self) -> int:
        return self.grant.location.version

    @property
    def servers(self) -> tuple[str, ...]:
        return tuple(s.server_id for s in self.grant.servers)

    # -- sending -------------------------------------------------------------------------------------------------

    async def send(self, offset: int, data: Buffer) -> None:
        """Start writing ``data`` at chunk ``offset`` (waits while the window is full). PipelineFailure if an
        earlier write failed: nothing of ``data`` was sent then."""
        window = self.dfs.config.write_window
        while len(self.pieces) >= window and not self.errors:
            await asyncio.wait([p.task for p in self.pieces if p.task], return_when=asyncio.FIRST_COMPLETED)
        if self.errors:
            raise await self.settle()
        self._start(_Piece(self.next_seq, offset, data))
        self.next_seq += 1

    def _start(self, piece: _Piece) -> None:
        piece.task = asyncio.get_running_loop().create_task(self._write(piece, self.acked))
        piece.task.add_done_callback(lambda task: self._done(piece, task))
        self.pieces.append(piece)
        self.length = max(self.length, piece.end)

    def _done(self, piece: _Piece, task: asyncio.Task[None]) -> None:
        if task.cancelled():
            self.errors.append(InternalError("write cancelled"))
            return
        exc = task.exception()
        if exc is not None:
            self.errors.append(exc)
            return
        self.acked = max(self.acked, piece.end)
        while self.pieces and self.pieces[0].task is not None and self.pieces[0].task.done():
            head = self.pieces[0]
            if head.task is not None and (head.task.cancelled() or head.task.exception() is not None):
                break
            self.pieces.popleft()

    async def _write(self, piece: _Piece, commit_through: int) -> None:
        grant, dfs = self.grant, self.dfs
        geometry, version = grant.geometry, self.version
        timeout = dfs.config.io_timeout_s
        if self.parallel:
            calls = [
                self._call(i, WriteChunk(geometry, version, piece.seq, piece.offset, commit_through), piece.data)
                for i in range(len(grant.servers))
            ]
            results = await asyncio.gather(*calls, return_exceptions=True)
            failures = [r for r in results if isinstance(r, BaseException)]
            if failures:
                raise failures[0]
            return
        links = tuple(
            ChainLink(s.server_id, s.address, grant.chain_tokens[i] if i < len(grant.chain_tokens) else b"")
            for i, s in enumerate(grant.servers)
        )[1:]
        request = WriteChunk(geometry, version, piece.seq, piece.offset, commit_through, links)
        await self._call(0, request, piece.data, timeout)

    async def _call(self, index: int, request: WriteChunk, data: Buffer, timeout: float | None = None) -> WriteReply:
        server = self.grant.servers[index]
        token = self.grant.tokens[index] if index < len(self.grant.tokens) else b""
        try:
            await self.dfs.presenter.ensure(server.address, self.chunk_id, self.version, token)
            reply: WriteReply = await self.dfs.rpc.call(
                server.address, request, payload=data, timeout=timeout or self.dfs.config.io_timeout_s
            )
        except FeitianError as exc:
            if not is_token_refusal(exc):  # a chunk server names a failed replica further down the chain itself
                exc.fields.setdefault("failed_server", server.server_id)
            raise
        return reply

    def commit_through(self) -> None:
        """Tell every replica (in the background) that readers may see bytes up to ``acked`` (log files)."""
        for index, server in enumerate(self.grant.servers):
            request = CommitThrough(self.chunk_id, self.version, self.acked)
            task = asyncio.get_running_loop().create_task(self._quiet(index, server.address, request))
            task.add_done_callback(lambda t: t.exception() if not t.cancelled() else None)

    async def _quiet(self, index: int, address: str, request: CommitThrough) -> None:
        token = self.grant.tokens[index] if index < len(self.grant.tokens) else b""
        try:
            await self.dfs.presenter.ensure(address, self.chunk_id, self.version, token)
            await self.dfs.rpc.call(address, request, timeout=5)
        except FeitianError:
            pass  # readers see the bytes with the next append (or once the chunk is sealed)

    # -- completion and failure ----------------------------------------------------------------------------------

    async def settle(self) -> PipelineFailure:
        """Wait for every write in flight; the failure summary (``fatal`` None and nothing failed: none)."""
        tasks = [p.task for p in self.pieces if p.task is not None]
        if tasks:
            await asyncio.wait(tasks)
        errors, self.errors = self.errors, []
        primary = self.grant.servers[0].server_id if self.grant.servers else ""
        return _classify(errors, primary)

    async def drain(self) -> None:
        """Return once everything sent is acknowledged; PipelineFailure otherwise."""
        failure = await self.settle()
        if failure.failed or failure.token_refused or failure.fatal is not None or self.pieces:
            if not (failure.failed or failure.token_refused or failure.fatal):
                failure.fatal = InternalError("writes unacknowledged without an error")
            raise failure

    def unacked(self) -> list[_Piece]:
        return [p for p in self.pieces if p.end > self.acked]

    def data_from(self, offset: int) -> list[memoryview]:
        """The unacknowledged bytes from chunk ``offset`` on (the tail a sealed pipeline did not keep)."""
        out = []
        for piece in self.unacked():
            if piece.end <= offset:
                continue
            view = memoryview(piece.data)
            out.append(view[max(0, offset - piece.offset) :])
        return out

    async def resend(self, grant: ChunkGrant | None = None) -> None:
        """Send every unacknowledged write again: with the same numbers (fresh tokens, same version) or, after a
        rebuilt pipeline (``grant`` at a new version), renumbered from 0."""
        pending = self.unacked()
        self.pieces.clear()
        if grant is not None and grant.location.version != self.version:
            self.next_seq = 0
            for piece in pending:
                piece.seq = self.next_seq
                self.next_seq += 1
        if grant is not None:
            self.grant = grant
        for piece in pending:
            self._start(piece)

    def update_tokens(self, grant: ChunkGrant) -> None:
        if grant.location.version == self.version:
            self.grant = grant

    def describe(self) -> dict[str, Any]:
        return {"chunk": self.chunk_id, "version": self.version, "acked": self.acked, "in_flight": len(self.pieces)}
