"""Writing a file: a lease, chunks allocated as the file grows, pipelines, and recovery from failed replicas.

**Acknowledgement.** ``await writer.flush()`` (and ``close()``) returns when every byte written so far is
durable on every replica of its chunk's current pipeline. ``write()`` returns once the bytes are handed to a
pipeline (or buffered, below one piece); it raises if an earlier piece failed beyond recovery.

**Failures.** When a replica fails, the writer waits for the writes in flight, then asks the master to recover
the chunk (the master takes the surviving replicas' agreed length, which is never below what was acknowledged):

* appends (the default, and log files): the chunk is *sealed* there and the bytes after it are written again
  to a new chunk on other servers;
* random writes: the pipeline is *rebuilt* at a new version with a replacement copied from a survivor, and the
  unacknowledged writes are sent again.

A refused token (expired, or lost with a reconnect) is replaced with a fresh one and the writes are resent with
the same numbers (replicas acknowledge duplicates without applying them twice).

**Giving up.** :meth:`FileWriter.abort` (an exception inside ``async with``, a failed ``write_file``) releases the
lease at once instead of leaving the file locked until the lease expires: the master seals the file where its
replicas agree and closes it, or — ``abort(remove=True)``, what ``write_file`` and ``feitian dfs put`` do —
deletes the file the writer was creating.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections import deque
from typing import TYPE_CHECKING, Any

from feitian.dfs.client.pipeline import Buffer, ChunkPipeline, PipelineFailure
from feitian.dfs.core import ChunkLocation, FileType, LeaseMode
from feitian.dfs.messages.master import (
    AddChunkRequest,
    ChunkGrant,
    CloseRequest,
    CommitRequest,
    DeleteRequest,
    OpenChunk,
    OpenReply,
    PlanWriteRequest,
    RecoverChunk,
    ReleaseRequest,
    RenewRequest,
    WriteTokens,
)
from feitian.errors import (
    ConflictError,
    ConflictReason,
    FeitianError,
    InvalidArgumentError,
    NotFoundError,
    UnavailableError,
    UnavailableReason,
)
from feitian.runtime.periodic import PeriodicTask

if TYPE_CHECKING:
    from feitian.dfs.client.client import DfsClient

__all__ = ["FileWriter"]

log = logging.getLogger(__name__)
MAX_RECOVERIES = 16  # per flush: a writer that keeps failing gives up with the last error
ABORT_TIMEOUT_S = 10.0  # abort's release (or removal) of the file, all master calls included


class FileWriter:
    def __init__(self, dfs: DfsClient, path: str, reply: OpenReply, mode: LeaseMode) -> None:
        self.dfs = dfs
        self.path = path
        self.file_id = reply.file_id
        self.lease_id = reply.lease_id
        self.mode = mode
        status = reply.status
        self.chunk_size = status.chunk_size_bytes
        self.log_file = status.file_type is FileType.LOG
        self.block = reply.block_size_bytes
        self.length = status.length  # the file's length as this writer knows it
        self.position = status.length
        self.last: ChunkLocation | None = reply.last_chunk
        # Where the pipeline's chunk starts in the file or, without a pipeline, where the next chunk will start.
        self.base = status.length
        self.pipe: ChunkPipeline | None = None  # the file's last chunk, while this writer appends to it
        self.queue: deque[memoryview] = deque()
        self.queued = 0
        self.excluded: set[str] = set()
        self.error: BaseException | None = None
        self.closed = False
        self.lock = asyncio.Lock()
        self.recoveries = 0
        piece = max(self.block, dfs.config.piece_bytes - dfs.config.piece_bytes % self.block)
        self.piece = min(piece, self.chunk_size)
        self.lease_expires_ns = reply.lease_expires_ns
        self._renewer = PeriodicTask(
            f"write {path}: lease renewal",
            self._renew_once,
            dfs.config.lease_renew_s,
            clock=dfs.clock,
            first_delay_s=self._next_renewal_s(),  # the lease was just granted
            logger=log,
        )
        self._renewer.start()
        self._opened = False

    async def __aenter__(self) -> FileWriter:
        return self

    async def __aexit__(self, exc_type: Any, *rest: Any) -> None:
        if exc_type is None:
            await self.close()
        else:
            await self.abort()

    # -- the API -------------------------------------------------------------------------------------------------

    async def write(self, data: Buffer) -> int:
        """Write at the current position (the end of the file, unless opened for random writes and moved by
        :meth:`seek`); returns the number of bytes taken."""
        async with self.lock:
            self._check()
            if self.mode is LeaseMode.RANDOM:
                await self._pwrite(self.position, data)
            elif self.log_file:
                await self._append_record(data)
            else:
                await self._ensure_open()
                self._enqueue(data)
                await self._pump(final=False)
            self.position += len(data)
            self.length = max(self.length, self.position)
            return len(data)

    async def pwrite(self, offset: int, data: Buffer) -> int:
        """(Random-write mode.) Write at ``offset`` (at most the file's length: no holes); durable on return."""
        async with self.lock:
            self._check()
            if self.mode is not LeaseMode.RANDOM:
                raise InvalidArgumentError(f"write {self.path}: opened for append; open with mode='random'")
            await self._pwrite(offset, data)
            self.length = max(self.length, offset + len(data))
            return len(data)

    def seek(self, offset: int) -> int:
        if self.mode is not LeaseMode.RANDOM and offset != self.position:
            raise InvalidArgumentError(f"seek {self.path}: a file opened for append is written only at its end")
        if not 0 <= offset <= self.length:
            raise InvalidArgumentError(f"seek {self.path}: {offset} is outside 0..{self.length} (no holes)")
        self.position = offset
        return offset

    def tell(self) -> int:
        return self.position

    async def flush(self) -> None:
        """Return once everything written so far is durable on every replica."""
        async with self.lock:
            self._check()
            await self._flush()

    async def close(self) -> int:
        """Flush, commit the last chunk's length, seal it and release the lease; returns the file's length."""
        async with self.lock:
            if self.closed:
                return self.length
            self._check()
            await self._flush()
            last_length = self.pipe.length if self.pipe is not None else -1
            request = CloseRequest(self.path, self.file_id, self.lease_id, last_length)
            try:
                self.length = await self.dfs.master(request)
            except ConflictError as exc:
                if exc.fields.get("reason") != ConflictReason.NO_LEASE:
                    raise
                status = await self.dfs.stat(self.path)  # a retried close whose first attempt succeeded
                if status.lease_holder is not None or status.length != self.base + max(0, last_length):
                    raise
                self.length = status.length
            self.closed = True
            self._renewer.cancel()
            return self.length

    async def abort(self, *, remove: bool = False) -> None:
        """Stop writing without closing: unflushed bytes are dropped and the lease is released at once — the
        master seals the file where its replicas agree (what was acknowledged stays) and closes it. ``remove``:
        delete the file instead (a failed upload taking back the file it created). Best effort: when the master
        cannot be reached the lease expires and the master recovers the file, as for a writer that vanished."""
        if self.closed:
            return
        self.closed = True
        self._renewer.cancel()
        if self.pipe is not None:
            for piece in self.pipe.pieces:
                if piece.task is not None:
                    piece.task.cancel()
        budget, attempt = ABORT_TIMEOUT_S, ABORT_TIMEOUT_S / 2
        try:
            if remove:
                request = DeleteRequest(self.path, False, self.lease_id)
                await self.dfs.master(request, timeout_s=budget, attempt_timeout_s=attempt)
            else:
                release = ReleaseRequest(self.path, self.file_id, self.lease_id)
                await self.dfs.master(release, timeout_s=budget, attempt_timeout_s=attempt)
        except NotFoundError:
            pass  # removed already (a retry of a delete whose reply was lost)
        except ConflictError as exc:
            if exc.fields.get("reason") not in (ConflictReason.NO_LEASE, ConflictReason.STALE_LEASE):
                log.warning("write %s: giving up the file failed: %s", self.path, exc)
        except FeitianError as exc:
            log.warning(
                "write %s: could not %s (%s); the master recovers the file when the lease expires",
                self.path,
                "remove it" if remove else "release the lease",
                exc,
            )

    # -- internals -----------------------------------------------------------------------------------------------

    def _check(self) -> None:
        if self.closed:
            raise InvalidArgumentError(f"write {self.path}: the file is closed")
        if self.error is not None:
            raise self.error

    def _enqueue(self, data: Buffer) -> None:
        view = memoryview(data if isinstance(data, bytes) else bytes(data))  # the caller may reuse a bytearray
        if view:
            self.queue.append(view)
            self.queued += len(view)

    def _take(self, n: int) -> Buffer:
        first = self.queue[0]
        if len(first) >= n:
            self.queue[0] = first[n:]
            if not self.queue[0]:
                self.queue.popleft()
            self.queued -= n
            return first[:n]
        out = bytearray()
        while len(out) < n:
            head = self.queue.popleft()
            take = min(n - len(out), len(head))
            out += head[:take]
            if take < len(head):
                self.queue.appendleft(head[take:])
        self.queued -= n
        return bytes(out)

    def _requeue_front(self, parts: list[memoryview] | Buffer) -> None:
        items = parts if isinstance(parts, list) else [memoryview(parts)]
        for part in reversed(items):
            if len(part):
                self.queue.appendleft(memoryview(part))
                self.queued += len(part)

    async def _ensure_open(self) -> None:
        """Before the first append: a last chunk left unsealed (a writer that died) is sealed at the length its
        replicas agree on (the master does it), so this writer starts a new chunk after it."""
        if self._opened:
            return
        self._opened = True
        last = self.last
        if last is not None and not last.sealed:
            grant = await self._recover_call(last.chunk_id, last.version, set(), last.length, rebuild=False)
            self.last = grant.location
            self.base += grant.location.length - last.length
            self.length = self.position = self.base

    async def _pump(self, *, final: bool) -> None:
        """Hand queued bytes to pipelines: whole pieces, and with ``final`` the rest too."""
        while self.queued >= self.piece or (final and self.queued):
            if self.pipe is None or self.pipe.length >= self.chunk_size:
                await self._roll()
            assert self.pipe is not None
            n = min(self.piece, self.chunk_size - self.pipe.length, self.queued)
            misalign = self.pipe.length % self.block
            if misalign:  # after a short flush: realign, so later pieces need no read-modify-write of a block
                n = min(n, self.piece - misalign)
            data = self._take(n)
            try:
                await self.pipe.send(self.pipe.length, data)
            except PipelineFailure as failure:
                self._requeue_front(data)
                await self._recover(failure)

    async def _flush(self) -> None:
        if self.log_file or self.mode is LeaseMode.RANDOM:
            return  # those writes are durable when they return
        await self._ensure_open()
        self.recoveries = 0
        while True:
            await self._pump(final=True)
            if self.pipe is None or (await self._drain_current() and not self.queued):
                return

    async def _drain_current(self) -> bool:
        """Wait until the pipeline has everything it was sent (recovering as needed). False if recovery sealed
        its chunk: the bytes it did not keep are back in the queue, for a new chunk."""
        while self.pipe is not None:
            try:
                await self.pipe.drain()
                return True
            except PipelineFailure as failure:
                await self._recover(failure)
        return False

    async def _roll(self) -> None:
        """A new last chunk: the current one (full, or sealed by recovery) is done."""
        previous = -1
        while self.pipe is not None:
            try:
                await self.pipe.drain()
            except PipelineFailure as failure:
                await self._recover(failure)
                continue
            previous = self.pipe.length
            self.base += previous
            self.pipe = None
        after = self.last.chunk_id if self.last is not None else 0
        clock = self.dfs.clock
        deadline_ns = clock.monotonic_ns() + int(self.dfs.config.timeout_s * 1e9)
        while True:
            exclude = tuple(sorted(self.excluded))
            request = AddChunkRequest(self.path, self.file_id, self.lease_id, after, previous, exclude)
            try:
                grant: ChunkGrant = await self.dfs.master(request)
                break
            except UnavailableError as exc:
                # The master waits for chunk servers registering with a new leader itself; here only servers
                # that failed this writer earlier may be all there is: try them again, once.
                if (
                    exc.fields.get("reason") != UnavailableReason.NO_SERVERS
                    or not self.excluded
                    or clock.monotonic_ns() > deadline_ns
                ):
                    raise
                self.excluded.clear()
        self.last = grant.location
        self.pipe = ChunkPipeline(self.dfs, grant, 0, parallel=self.log_file)

    async def _recover_call(
        self, chunk_id: int, version: int, failed: set[str], acked: int, *, rebuild: bool
    ) -> ChunkGrant:
        request = RecoverChunk(self.path, self.file_id, self.lease_id, chunk_id, version, tuple(failed), acked, rebuild)
        grant: ChunkGrant = await self.dfs.master(request, slow=True)
        return grant

    async def _recover(self, failure: PipelineFailure, pipe: ChunkPipeline | None = None) -> None:
        pipe = pipe or self.pipe
        assert pipe is not None
        more = await pipe.settle()  # everything still in flight finishes first
        failure.failed |= more.failed
        failure.token_refused = failure.token_refused or more.token_refused
        fatal = failure.fatal or more.fatal
        self.recoveries += 1
        if fatal is not None or self.recoveries > MAX_RECOVERIES:
            self.error = fatal or UnavailableError(f"write {self.path}: gave up after {MAX_RECOVERIES} recoveries")
            raise self.error
        if failure.token_refused and not failure.failed:
            request = WriteTokens(self.path, self.file_id, self.lease_id, pipe.chunk_id)
            grant: ChunkGrant = await self.dfs.master(request)
            await pipe.resend(grant)
            return
        log.info(
            "write %s: replicas %s of chunk %d failed; recovering", self.path, sorted(failure.failed), pipe.chunk_id
        )
        self.excluded |= failure.failed
        rebuild = self.mode is LeaseMode.RANDOM
        try:
            grant = await self._recover_call(pipe.chunk_id, pipe.version, failure.failed, pipe.acked, rebuild=rebuild)
        except FeitianError as exc:
            self.error = exc
            raise
        if rebuild:
            await pipe.resend(grant)
            return
        kept = grant.location.length  # sealed there: what follows goes to a new chunk
        self._requeue_front(pipe.data_from(kept))
        self.last = grant.location
        if pipe is self.pipe:
            self.base += kept
            self.pipe = None

    # -- log files -----------------------------------------------------------------------------------------------

    async def _append_record(self, data: Buffer) -> None:
        """One append to a log file: written to every replica in parallel, durable on return. A record never
        spans chunks."""
        if len(data) > self.chunk_size:
            raise InvalidArgumentError(
                f"append {self.path}: a record of {len(data)} bytes does not fit in a chunk ({self.chunk_size})"
            )
        await self._ensure_open()
        self._enqueue(data)
        self.recoveries = 0
        while self.queued:
            if self.pipe is None or self.pipe.length + self.queued > self.chunk_size:
                await self._roll()
            assert self.pipe is not None
            record = self._take(self.queued)
            try:
                await self.pipe.send(self.pipe.length, record)
            except PipelineFailure as failure:
                self._requeue_front(record)  # not sent at all
                await self._recover(failure)
                continue
            if await self._drain_current():
                assert self.pipe is not None
                self.pipe.commit_through()
            # else: the chunk was sealed without the record, which is queued again for a new chunk

    # -- random writes -------------------------------------------------------------------------------------------

    async def _pwrite(self, offset: int, data: Buffer) -> None:
        if not len(data):
            return
        if self.pipe is not None and self.pipe.acked:
            await self.dfs.master(
                CommitRequest(self.path, self.file_id, self.lease_id, self.pipe.chunk_id, self.pipe.acked)
            )
        plan = await self.dfs.master(PlanWriteRequest(self.path, self.file_id, self.lease_id, offset, len(data)))
        view = memoryview(data if isinstance(data, bytes) else bytes(data))
        pos = 0
        for location, chunk_offset, count in plan.touched:
            await self._write_in_chunk(location, chunk_offset, view[pos : pos + count])
            pos += count
        if pos < len(view):
            self._enqueue(view[pos:])
            self.recoveries = 0
            while True:
                await self._pump(final=True)
                if self.pipe is None or (await self._drain_current() and not self.queued):
                    break
        if self.pipe is not None:
            await self.dfs.master(
                CommitRequest(self.path, self.file_id, self.lease_id, self.pipe.chunk_id, self.pipe.acked)
            )

    async def _write_in_chunk(self, location: ChunkLocation, chunk_offset: int, data: memoryview) -> None:
        pipe = self.pipe if self.pipe is not None and self.pipe.chunk_id == location.chunk_id else None
        if pipe is None:
            request = OpenChunk(self.path, self.file_id, self.lease_id, location.chunk_id)
            grant: ChunkGrant = await self.dfs.master(request, slow=True)
            pipe = ChunkPipeline(self.dfs, grant, grant.location.length, parallel=False)
            is_last = self.last is None or location.index >= self.last.index
            if is_last and not grant.location.sealed:
                if self.pipe is not None:
                    await self.pipe.drain()
                self.pipe, self.last = pipe, grant.location
                self.base = location.file_offset
        self.recoveries = 0
        sent = 0
        while sent < len(data):
            n = min(self.piece, len(data) - sent)
            try:
                await pipe.send(chunk_offset + sent, data[sent : sent + n])
                sent += n
            except PipelineFailure as failure:
                await self._recover(failure, pipe)
        while True:
            try:
                await pipe.drain()
                return
            except PipelineFailure as failure:
                await self._recover(failure, pipe)

    # -- the lease -----------------------------------------------------------------------------------------------

    async def _renew_once(self) -> float | None:
        """Renew the lease, then say when to next (:meth:`_next_renewal_s`) — after a failed renewal too, so
        retries come faster near the expiry. A lost lease ends the loop and fails the writer's next call."""
        try:
            try:
                grant = await self.dfs.master(RenewRequest(self.path, self.file_id, self.lease_id))
                self.lease_expires_ns = grant.expires_ns
            except ConflictError as exc:
                log.error("write %s: lost the write lease: %s", self.path, exc)
                self.error = exc
                self._renewer.cancel()
                return None
            pipe = self.pipe
            if pipe is not None:  # tokens expire with the old lease expiry: fresh ones for the next writes
                grant = await self.dfs.master(WriteTokens(self.path, self.file_id, self.lease_id, pipe.chunk_id))
                pipe.update_tokens(grant)
        except FeitianError as exc:
            log.warning("write %s: lease renewal failed (retrying): %s", self.path, exc)
        return self._next_renewal_s()

    def _next_renewal_s(self) -> float:
        """Every ``lease_renew_s``, sooner as the lease runs out: a third of what is left, at least 0.1 s."""
        remaining_s = (self.lease_expires_ns - self.dfs.clock.wall_ns()) / 1e9  # the master's clock, roughly ours
        return min(self.dfs.config.lease_renew_s, max(0.1, remaining_s / 3))

    def __del__(self) -> None:
        with contextlib.suppress(Exception):
            self._renewer.cancel()
