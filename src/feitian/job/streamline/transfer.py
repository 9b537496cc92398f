"""Moving committed partitions between machines over Kuafu's bulk path.

``streamline.Fetch`` asks a worker for a byte range of one committed partition file; the reply carries the
partition's length and checksum, the bytes travel as the reply's raw payload (never inside the message), like
Pangu's chunk reads. :class:`ShuffleService` answers it from an :class:`~.store.OutputStore` (a TaskWorker process
hosts it); :class:`ShuffleClient` reads partition ``j`` of a list of producer instances:

* unsorted: up to ``fetch_parallelism`` producers at once, each handing decoded batches through a queue of one;
* sorted: a k-way merge over every producer at once when ``k`` producers' buffers (a piece and a block each) fit
  in ``memory_bytes``; otherwise the partitions are first copied to local disk (``fetch_parallelism`` at a time)
  and merged there in passes (:func:`~.runs.reduce_segments`).

A producer instance may have several locations (another attempt's copy): a piece that fails at one location
(unreachable, not committed there) is asked of the next. Moving on mid-partition is allowed only if the other
copy has the same length and CRC-32C (the same bytes); otherwise the fetch fails with UnavailableError and the
consumer instance is retried by its task (FUXI-10).
"""

from __future__ import annotations

import asyncio
import shutil
import tempfile
from collections.abc import AsyncGenerator, AsyncIterator, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

import msgspec
import pyarrow as pa

from feitian.base.units import MiB
from feitian.errors import (
    DeadlineExceededError,
    FeitianError,
    InvalidArgumentError,
    NotFoundError,
    UnavailableError,
)
from feitian.job.streamline.blocks import HEADER, BlockParser
from feitian.job.streamline.config import StreamlineConfig
from feitian.job.streamline.merge import Merger, merge_sorted
from feitian.job.streamline.runs import Segment, reduce_segments, segment_batches
from feitian.job.streamline.store import OutputStore
from feitian.rpc import CallContext, Client, Request, Server
from feitian.runtime.files import translating

__all__ = [
    "MAX_PIECE_BYTES",
    "FetchPartition",
    "FetchReply",
    "KuafuSource",
    "PieceSource",
    "ProducerLocation",
    "ShuffleClient",
    "ShuffleService",
    "SourceReader",
    "source_batches",
]

MAX_PIECE_BYTES = 16 * MiB  # the most one Fetch returns, whatever it asks for


class FetchReply(msgspec.Struct, frozen=True):
    """The partition's whole length, records and CRC-32C, and the attempt that committed it; the payload holds
    the bytes asked for (fewer at the end of the file)."""

    length: int
    records: int
    crc: int
    attempt: int


class FetchPartition(Request[FetchReply], frozen=True, tag="streamline.Fetch"):
    """Bytes ``[offset, offset + length)`` of partition ``partition`` of ``output``'s committed ``instance``."""

    output: str
    instance: int
    partition: int
    offset: int
    length: int

    idempotent = True


def _read_range(path: Path, offset: int, length: int) -> bytes:
    with translating("read", path), open(path, "rb") as f:
        f.seek(offset)
        return f.read(length)


class ShuffleService:
    """Serves the committed partitions of one :class:`OutputStore`."""

    def __init__(self, store: OutputStore) -> None:
        self.store = store
        self.bytes_served = 0

    def register(self, server: Server, *, lane: str | None = None) -> None:
        server.add_handler(FetchPartition, self.fetch, lane=lane)

    async def fetch(self, ctx: CallContext, req: FetchPartition) -> FetchReply:
        index = self.store.index(req.output, req.instance)  # NotFoundError if not committed here
        if not 0 <= req.partition < len(index.partitions):
            raise InvalidArgumentError(
                f"fetch {req.output}/{req.instance}: partition {req.partition} of {len(index.partitions)}"
            )
        entry = index.partitions[req.partition]
        if req.offset < 0 or req.length < 0 or req.offset > entry.length:
            raise InvalidArgumentError(
                f"fetch {req.output}/{req.instance}/{req.partition}: range at {req.offset} (+{req.length}) is "
                f"outside the partition's {entry.length} bytes"
            )
        n = min(req.length, MAX_PIECE_BYTES, entry.length - req.offset)
        path = self.store.partition_path(req.output, req.instance, req.partition)
        data = await asyncio.to_thread(_read_range, path, req.offset, n) if n else b""
        ctx.reply_payload = data
        self.bytes_served += len(data)
        return FetchReply(entry.length, entry.records, entry.crc, index.attempt)


@dataclass(frozen=True, slots=True)
class ProducerLocation:
    """Where one producer instance's committed output may be fetched: Kuafu addresses, best first."""

    instance: int
    addresses: tuple[str, ...]


_RETRYABLE = (UnavailableError, DeadlineExceededError)


class KuafuSource:
    """One producer instance's partition as a stream of pieces, moving to another location on failure."""

    def __init__(
        self, client: Client, config: StreamlineConfig, output: str, loc: ProducerLocation, partition: int
    ) -> None:
        if not loc.addresses:
            raise InvalidArgumentError(f"producer instance {loc.instance} of {output}: no location to fetch from")
        self.client = client
        self.config = config
        self.output = output
        self.loc = loc
        self.partition = partition
        self.where = f"{output}/{loc.instance}/part-{partition}"
        self.offset = 0
        self.length: int | None = None
        self.crc: int | None = None
        self._address = 0

    async def piece(self) -> bytes | None:
        """The next piece of the partition (None at its end)."""
        if self.length is not None and self.offset >= self.length:
            return None
        last: FeitianError | None = None
        while self._address < len(self.loc.addresses):
            address = self.loc.addresses[self._address]
            request = FetchPartition(
                self.output, self.loc.instance, self.partition, self.offset, self.config.fetch_piece_bytes
            )
            for _ in range(self.config.fetch_attempts):
                try:
                    reply = await self.client.call_full(address, request, timeout=self.config.fetch_timeout_s)
                except NotFoundError as exc:
                    last = exc
                    break  # not committed there: another location, not another try
                except _RETRYABLE as exc:
                    last = exc
                    continue
                value = reply.value
                if self.length is None:
                    self.length, self.crc = value.length, value.crc
                elif (value.length, value.crc) != (self.length, self.crc):
                    raise UnavailableError(
                        f"fetch {self.where}: the copy at {address} differs from the one being read "
                        f"({value.length} bytes, crc {value.crc:#x}; expected {self.length}, {self.crc:#x})",
                        hint="the consumer instance must be run again",
                    )
                data = bytes(reply.payload)
                if not data and self.offset < self.length:
                    raise UnavailableError(f"fetch {self.where}: {address} returned no bytes at {self.offset}")
                self.offset += len(data)
                return data if data or self.offset < self.length else None
            self._address += 1
        raise UnavailableError(
            f"fetch {self.where}: no location could serve it (tried {', '.join(self.loc.addresses)}): {last}",
            locations=list(self.loc.addresses),
        )


class PieceSource(Protocol):
    """A partition being read as a stream of pieces (from a worker over Kuafu, or from Pangu)."""

    where: str
    offset: int  # bytes read so far

    async def piece(self) -> bytes | None:
        """The next piece (None at the end)."""
        ...


async def source_batches(source: PieceSource) -> AsyncGenerator[pa.RecordBatch, None]:
    """The verified batches of a source's blocks, one partial block buffered at most."""
    parser = BlockParser(source.where)
    while True:
        data = await source.piece()
        if data is None:
            break
        for batch in parser.feed(data):
            yield batch
    parser.finish()


class SourceReader:
    """Reads partitions from piece sources under ``config``'s bounds: unsorted with bounded parallelism, sorted
    by an in-memory k-way merge when it fits ``memory_bytes``, else staged on local disk and merged there."""

    def __init__(self, config: StreamlineConfig, scratch: Path | None = None) -> None:
        self.config = config
        self.scratch = scratch  # where a sorted read too large to merge in memory is staged (default: a tmp dir)
        self.staged_bytes = 0  # bytes staged on local disk by sorted reads (for tests and stats)

    def merge_fits(self, sources: int) -> bool:
        """Whether a sorted read of ``sources`` partitions merges in memory (else it is staged on disk)."""
        per_source = 2 * self.config.block_bytes + self.config.fetch_piece_bytes + HEADER.size
        return sources * per_source <= self.config.memory_bytes

    async def read(self, sources: Sequence[PieceSource], *, sort: bool, key: str) -> AsyncIterator[pa.RecordBatch]:
        if not sort:
            async for batch in self._unsorted(sources):
                yield batch
        elif self.merge_fits(len(sources)):
            async for batch in self._merged(sources, key):
                yield batch
        else:
            async for batch in self._staged(sources, key):
                yield batch

    async def _unsorted(self, sources: Sequence[PieceSource]) -> AsyncIterator[pa.RecordBatch]:
        queue: asyncio.Queue[pa.RecordBatch | BaseException | None] = asyncio.Queue(maxsize=1)
        todo = iter(sources)

        async def run() -> None:
            try:
                for source in todo:  # shared iterator: each worker takes the next producer
                    async for batch in source_batches(source):
                        await queue.put(batch)
            except Exception as exc:  # a task boundary: the consumer raises it (and cancels the other workers)
                await queue.put(exc)
                return
            await queue.put(None)

        workers = [asyncio.create_task(run()) for _ in range(min(self.config.fetch_parallelism, len(sources)))]
        try:
            running = len(workers)
            while running:
                item = await queue.get()
                if item is None:
                    running -= 1
                elif isinstance(item, BaseException):
                    raise item
                else:
                    yield item
        finally:
            for w in workers:
                w.cancel()
            await asyncio.gather(*workers, return_exceptions=True)

    async def _merged(self, sources: Sequence[PieceSource], key: str) -> AsyncIterator[pa.RecordBatch]:
        """The k-way merge, every producer streaming; at most ``fetch_parallelism`` fetch calls at once."""
        merger = Merger(len(sources), key)
        limit = asyncio.Semaphore(self.config.fetch_parallelism)
        streams = [source_batches(s) for s in sources]

        async def next_of(i: int) -> pa.RecordBatch | None:
            async with limit:
                return await anext(streams[i], None)

        try:
            while not merger.finished:
                wanted = merger.wanted()
                for i, batch in zip(wanted, await asyncio.gather(*(next_of(i) for i in wanted)), strict=True):
                    if batch is None:
                        merger.end(i)
                    else:
                        merger.add(i, batch)
                out = merger.pop()
                if out is not None:
                    yield out
        finally:
            for stream in streams:
                await stream.aclose()

    async def _stage(self, source: PieceSource, path: Path) -> Segment:
        f = await asyncio.to_thread(open, path, "wb")
        try:
            while True:
                data = await source.piece()
                if data is None:
                    break
                with translating("write", path):
                    await asyncio.to_thread(f.write, data)
        finally:
            f.close()
        self.staged_bytes += source.offset
        return Segment(path, 0, source.offset, 0)

    async def _staged(self, sources: Sequence[PieceSource], key: str) -> AsyncIterator[pa.RecordBatch]:
        """Copy every producer's partition to local disk, then merge there with a bounded fan-in."""
        base = tempfile.mkdtemp(prefix="streamline-fetch-", dir=self.scratch)
        scratch = Path(base)
        try:
            limit = asyncio.Semaphore(self.config.fetch_parallelism)

            async def stage(i: int, source: PieceSource) -> Segment:
                async with limit:
                    return await self._stage(source, scratch / f"src-{i:06d}")

            segments = list(await asyncio.gather(*(stage(i, s) for i, s in enumerate(sources))))
            cfg = self.config
            segments, _ = await asyncio.to_thread(
                reduce_segments, segments, cfg.merge_fan_in, scratch, "fetch", key, cfg.block_bytes
            )
            merged: Iterator[pa.RecordBatch] = merge_sorted([segment_batches(s) for s in segments], key)
            while True:
                batch = await asyncio.to_thread(next, merged, None)
                if batch is None:
                    break
                yield batch
        finally:
            shutil.rmtree(scratch, ignore_errors=True)


class ShuffleClient:
    """Reads partitions of other instances' committed outputs from the workers holding them (module docstring)."""

    def __init__(self, client: Client, config: StreamlineConfig | None = None, *, scratch: Path | None = None) -> None:
        self.client = client
        self.config = config or StreamlineConfig()
        self.config.validate()
        self.reader = SourceReader(self.config, scratch)

    @property
    def staged_bytes(self) -> int:
        return self.reader.staged_bytes

    def merge_fits(self, producers: int) -> bool:
        return self.reader.merge_fits(producers)

    async def fetch(
        self,
        output: str,
        producers: Sequence[ProducerLocation],
        partition: int,
        *,
        sort: bool = False,
        key: str = "key",
    ) -> AsyncIterator[pa.RecordBatch]:
        """The records of ``partition`` of every producer instance, merged by ``key`` when ``sort``."""
        sources = [KuafuSource(self.client, self.config, output, loc, partition) for loc in producers]
        async for batch in self.reader.read(sources, sort=sort, key=key):
            yield batch
