"""Coalescing a client's concurrent writes: the writes issued in one event-loop step travel as one request.

A :class:`CoordClient` with many writes in flight (many tasks, one client) would pay one RPC, one log entry and
one reply per write. :class:`WriteBatcher` collects the writes submitted before the loop runs its next step and
sends them as one ``coord.WriteBatch`` (``messages.WriteBatchRequest``): the leader proposes them as one log
entry (``core.Batch``) and each write gets its own result back. A lone write goes as itself, so a client with
one write in flight sees no change. Nothing is delayed to wait for company: a batch is what piled up while the
client was busy, the way a group commit works.

Each write keeps its own ``client_id``/``request_seq``, so a batch retried across a leader failover is answered
write by write from the dedupe table, exactly like single writes. Writes never depend on each other: one
failing (a version conflict, a missing parent) fails alone. When the batch itself is refused — a capability
that covers some of its writes but not others, a server without ``coord.WriteBatch``, a batch too large — the
writes are sent one by one instead, so each gets the answer it would have had alone.

Bounds: at most ``max_writes`` writes and ``max_bytes`` of paths and values per batch (more go in further
batches, sent at the same time); a write larger than ``max_item_bytes`` always goes alone.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any

from feitian.coord.core.commands import write_bytes
from feitian.coord.core.results import ErrorValue
from feitian.coord.messages import (
    CreateRequest,
    DeleteRequest,
    SetRequest,
    TxnRequest,
    WriteBatchReply,
    WriteBatchRequest,
    WriteRequest,
)
from feitian.errors import (
    CallCancelledError,
    InvalidArgumentError,
    NotFoundError,
    NotFoundReason,
    PermissionDeniedError,
)

__all__ = ["MAX_BATCH_BYTES", "MAX_BATCH_WRITES", "MAX_ITEM_BYTES", "WriteBatcher", "batchable_size"]

MAX_BATCH_WRITES = 64  # the service accepts up to max_batch_writes (128)
MAX_BATCH_BYTES = 1 << 20  # of paths and values; the service accepts up to max_batch_bytes (4 MiB)
MAX_ITEM_BYTES = 64 << 10  # a larger write goes alone: it would gain nothing and delay the others

Send = Callable[[Any], Awaitable[Any]]


def batchable_size(request: Any) -> int | None:
    """The size a write adds to a batch (paths and values), or None if it cannot join one."""
    return write_bytes(request) if isinstance(request, _WRITES) else None


_WRITES = (CreateRequest, SetRequest, DeleteRequest, TxnRequest)


def _send_alone(exc: Exception) -> bool:
    """Whether a refusal of a whole batch may not meet its writes sent one by one."""
    if isinstance(exc, NotFoundError):  # a server without coord.WriteBatch
        return exc.fields.get("reason") == NotFoundReason.UNKNOWN_METHOD
    return isinstance(exc, PermissionDeniedError | InvalidArgumentError)


class WriteBatcher:
    """``await batcher.submit(request, size)`` sends ``request`` (a write) alone or in the next batch and returns
    its result (or raises its error). ``send(request)`` is the leader-following call of the client; the batcher
    runs its sends as tasks made by ``spawn`` (the client's, so that closing the client stops them)."""

    def __init__(
        self,
        send: Send,
        spawn: Callable[[Any], asyncio.Task[Any]],
        *,
        max_writes: int = MAX_BATCH_WRITES,
        max_bytes: int = MAX_BATCH_BYTES,
        max_item_bytes: int = MAX_ITEM_BYTES,
    ) -> None:
        self._send = send
        self._spawn = spawn
        self.max_writes = max_writes
        self.max_bytes = max_bytes
        self.max_item_bytes = max_item_bytes
        self._forming: list[tuple[WriteRequest, int, asyncio.Future[Any]]] | None = None  # this step's group
        self.batches = 0  # batch requests sent (tests and benchmarks read these)
        self.batched_writes = 0

    async def submit(self, request: WriteRequest, size: int) -> Any:
        if size > self.max_item_bytes:
            return await self._send(request)
        loop = asyncio.get_running_loop()
        group = self._forming
        if group is not None:  # another write of this step is gathering company: join it
            future: asyncio.Future[Any] = loop.create_future()
            group.append((request, size, future))
            return await future
        # The first write of this step yields once, so that the other tasks the loop runs in this step can join.
        group = self._forming = []
        try:
            await asyncio.sleep(0)
        except asyncio.CancelledError:
            self._forming = None
            self._flush(group)  # the others still go; this one does not
            raise
        self._forming = None
        if not group:  # alone: sent as itself, from this task
            return await self._send(request)
        future = loop.create_future()
        self._flush([(request, size, future), *group])
        return await future

    def _flush(self, items: list[tuple[WriteRequest, int, asyncio.Future[Any]]]) -> None:
        chunk: list[tuple[WriteRequest, asyncio.Future[Any]]] = []
        size = 0
        for request, item_size, future in items:
            if future.done():  # its caller was cancelled before it went out
                continue
            if chunk and (len(chunk) >= self.max_writes or size + item_size > self.max_bytes):
                self._start(chunk)
                chunk, size = [], 0
            chunk.append((request, future))
            size += item_size
        if chunk:
            self._start(chunk)

    def _start(self, chunk: list[tuple[WriteRequest, asyncio.Future[Any]]]) -> None:
        if len(chunk) == 1:
            self._spawn(self._run_one(*chunk[0]))
        else:
            self._spawn(self._run_batch(chunk))

    async def _run_one(self, request: WriteRequest, future: asyncio.Future[Any]) -> None:
        try:
            result = await self._send(request)
        except asyncio.CancelledError:
            _fail(future, _closed())
            raise
        except Exception as exc:  # the caller gets it
            _fail(future, exc)
            return
        if not future.done():
            future.set_result(result)

    async def _run_batch(self, chunk: list[tuple[WriteRequest, asyncio.Future[Any]]]) -> None:
        self.batches += 1
        self.batched_writes += len(chunk)
        try:
            reply: WriteBatchReply = await self._send(WriteBatchRequest(writes=tuple(r for r, _ in chunk)))
        except asyncio.CancelledError:
            _fail_all(chunk, _closed())
            raise
        except Exception as exc:
            if _send_alone(exc):  # each write then gets the answer it would have had alone
                await asyncio.gather(*(self._run_one(r, f) for r, f in chunk))
            else:  # every caller gets it
                _fail_all(chunk, exc)
            return
        if len(reply.results) != len(chunk):
            error = InvalidArgumentError(f"write batch: {len(reply.results)} results for {len(chunk)} writes")
            _fail_all(chunk, error)
            return
        for (_, future), result in zip(chunk, reply.results, strict=True):
            if future.done():
                continue
            if isinstance(result, ErrorValue):
                future.set_exception(result.to_error())
            else:
                future.set_result(result)


def _closed() -> CallCancelledError:
    return CallCancelledError("write: the client was closed while it was in flight (its outcome is unknown)")


def _fail(future: asyncio.Future[Any], exc: Exception) -> None:
    if not future.done():
        future.set_exception(exc)


def _fail_all(chunk: list[tuple[WriteRequest, asyncio.Future[Any]]], exc: Exception) -> None:
    for _, future in chunk:
        _fail(future, exc)
