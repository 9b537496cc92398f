"""Group commit for asyncio: concurrent appenders share one fdatasync per round.

:meth:`GroupCommitWAL.append` buffers the caller's batch (no I/O, on the event loop thread) and waits until it
is durable. One flusher task runs :meth:`WAL.sync` on a dedicated writer thread, so the event loop never
blocks on a disk write. While one fsync runs, every batch appended meanwhile waits for the next round: under
load each fsync carries everything that arrived during the previous one, with no timer and no added latency
when the log is idle.

Bounds: ``max_pending_bytes`` caps the bytes buffered and not yet written; an append past it waits for the
next round to finish (backpressure, not rejection). If a caller is cancelled while waiting, its batch is still
written: cancellation only stops the wait.
"""

from __future__ import annotations

import asyncio
import collections
import concurrent.futures
from collections.abc import Sequence

from feitian.errors import FeitianError, UnavailableError
from feitian.runtime.wal import WAL
from feitian.runtime.wal_format import Record

__all__ = ["GroupCommitWAL"]

DEFAULT_MAX_PENDING_BYTES = 64 * 1024 * 1024


class GroupCommitWAL:
    """Asyncio front end of a :class:`WAL`. Use from one event loop; close with :meth:`aclose`."""

    def __init__(self, wal: WAL, *, max_pending_bytes: int = DEFAULT_MAX_PENDING_BYTES) -> None:
        self.wal = wal
        self._max_pending_bytes = max_pending_bytes
        self._executor = concurrent.futures.ThreadPoolExecutor(1, thread_name_prefix="feitian-wal")
        self._waiters: collections.deque[tuple[int, asyncio.Future[int]]] = collections.deque()
        self._flusher: asyncio.Task[None] | None = None
        self._round_done: asyncio.Future[None] | None = None
        self._closing = False

    async def append(self, records: Sequence[Record]) -> int:
        """Append ``records`` as one batch and return its seq once it is durable.

        Raises the WAL's error if the round that carried this batch failed (a full disk: ``UnavailableError``
        with ``reason="disk_full"``; the batch was not written and later appends may succeed).
        """
        if self._closing:
            raise UnavailableError(f"wal {self.wal.directory}: closing")
        loop = asyncio.get_running_loop()
        while self.wal.pending_bytes >= self._max_pending_bytes:
            self._kick(loop)
            if self._round_done is None:
                self._round_done = loop.create_future()
            await asyncio.shield(self._round_done)
        seq = self.wal.append(records)
        if seq <= self.wal.durable_seq:
            return seq
        future: asyncio.Future[int] = loop.create_future()
        self._waiters.append((seq, future))
        self._kick(loop)
        return await future

    def _kick(self, loop: asyncio.AbstractEventLoop) -> None:
        if self._flusher is None or self._flusher.done():
            self._flusher = loop.create_task(self._flush(loop), name="feitian-wal-flusher")

    def _sync_round(self) -> tuple[int, int, FeitianError | None]:
        """Runs on the writer thread: one sync; returns (durable seq, failed seq, error)."""
        try:
            self.wal.sync()
        except FeitianError as exc:
            return self.wal.durable_seq, self.wal.failed_seq, exc
        return self.wal.durable_seq, self.wal.failed_seq, None

    async def _flush(self, loop: asyncio.AbstractEventLoop) -> None:
        try:
            while self._waiters or self.wal.pending_bytes:
                durable, failed, error = await loop.run_in_executor(self._executor, self._sync_round)
                if error is not None and not self.wal.usable:
                    failed = self._waiters[-1][0] if self._waiters else failed  # nothing will ever succeed
                self._resolve(durable, failed, error)
                self._end_round()
                if not self.wal.usable:
                    break
        except BaseException as exc:  # a bug or cancellation: nobody may wait forever
            error = exc if isinstance(exc, FeitianError) else UnavailableError(f"wal flusher failed: {exc!r}")
            self._resolve(0, self._waiters[-1][0] if self._waiters else 0, error)
            self._end_round()
            raise

    def _resolve(self, durable: int, failed: int, error: FeitianError | None) -> None:
        """Complete the waiters of batches that are durable (seq <= durable) or were dropped (<= failed)."""
        while self._waiters and self._waiters[0][0] <= max(durable, failed):
            seq, future = self._waiters.popleft()
            if future.done():  # the caller was cancelled; its batch was handled all the same
                continue
            if seq <= durable:
                future.set_result(seq)
            else:
                future.set_exception(error or UnavailableError(f"wal {self.wal.directory}: batch dropped"))

    def _end_round(self) -> None:
        if self._round_done is not None:
            self._round_done.set_result(None)
            self._round_done = None

    async def aclose(self) -> None:
        """Wait for appends in flight, then close the WAL (syncing what is buffered) on the writer thread."""
        self._closing = True
        if self._flusher is not None:
            await self._flusher
        loop = asyncio.get_running_loop()
        try:
            await loop.run_in_executor(self._executor, self.wal.close)
        finally:
            self._executor.shutdown(wait=True)
