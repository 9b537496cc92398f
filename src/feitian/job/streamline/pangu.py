"""An edge's data through Pangu instead of worker to worker: one Pangu file per (producer instance, partition).

::

    <base>/<output>/attempts/<instance>.<attempt>/part-00000 … index.json    being uploaded
    <base>/<output>/committed/<instance>/part-00000 … index.json             visible

A producer writes and commits its output locally as usual (:class:`~.writer.PartitionedWriter`: spills and
merges stay on the local disk), then :meth:`PanguOutput.publish` uploads the committed partition files (in
pieces of ``fetch_piece_bytes``; never the whole file in memory) under its attempt directory and makes them
visible with one Pangu ``rename`` of the directory — atomic in Pangu's namespace, and refused if another attempt
of the instance published first (then this attempt's upload is deleted). Consumers read
``committed/<instance>/part-<j>`` with :meth:`PanguOutput.fetch`, with the same bounds as
:class:`~.transfer.ShuffleClient`. The output outlives the workers: a consumer retried after its producer's
machine died still finds it.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, BinaryIO

import msgspec
import pyarrow as pa

from feitian.errors import AlreadyExistsError, DataCorruptionError, InvalidArgumentError, NotFoundError
from feitian.job.streamline.config import StreamlineConfig
from feitian.job.streamline.store import INDEX_NAME, CommitResult, OutputIndex, OutputStore, check_name, part_name
from feitian.job.streamline.transfer import SourceReader
from feitian.runtime.files import translating

if TYPE_CHECKING:
    from feitian.dfs import DfsClient  # only for types: importing streamline does not load Pangu's client

__all__ = ["PanguOutput", "PanguSource", "upload_file"]


class PanguSource:
    """One Pangu partition file read in pieces."""

    def __init__(self, dfs: DfsClient, path: str, length: int, piece_bytes: int) -> None:
        self.dfs = dfs
        self.where = f"pangu:{path}"
        self.path = path
        self.length = length
        self.piece_bytes = piece_bytes
        self.offset = 0

    async def piece(self) -> bytes | None:
        if self.offset >= self.length:
            return None
        n = min(self.piece_bytes, self.length - self.offset)
        data: bytes = await self.dfs.read(self.path, self.offset, n)
        if len(data) != n:
            raise DataCorruptionError(f"read {self.path}: {len(data)} bytes at {self.offset}, expected {n}")
        self.offset += n
        return data


class PanguOutput:
    """Publishes committed outputs to Pangu and reads their partitions back. ``dfs`` is a
    :class:`feitian.dfs.DfsClient`; ``replication`` 0 means the cluster's default."""

    def __init__(
        self,
        dfs: DfsClient,
        base: str,
        config: StreamlineConfig | None = None,
        *,
        replication: int = 0,
        scratch: Path | None = None,
    ) -> None:
        self.dfs = dfs
        self.base = base.rstrip("/") or "/"
        self.config = config or StreamlineConfig()
        self.config.validate()
        self.replication = replication
        self.reader = SourceReader(self.config, scratch)

    def _dir(self, output: str) -> str:
        return f"{self.base}/{check_name('output', output)}"

    def committed_dir(self, output: str, instance: int) -> str:
        return f"{self._dir(output)}/committed/{instance}"

    async def publish(self, store: OutputStore, result: CommitResult) -> bool:
        """Upload the instance's committed local output (``result`` of its writer's close) and make it visible.
        False if another attempt of the instance had published first (this upload is then deleted)."""
        index = result.index
        attempt_dir = f"{self._dir(index.output)}/attempts/{index.instance}.{index.attempt}"
        if await self.dfs.exists(attempt_dir):
            await self.dfs.delete(attempt_dir, recursive=True)  # a leftover of the same attempt that died
        await self.dfs.mkdir(attempt_dir, parents=True)
        for j in range(len(index.partitions)):
            await self._upload(store.partition_path(index.output, index.instance, j), f"{attempt_dir}/{part_name(j)}")
        await self.dfs.write_file(
            f"{attempt_dir}/{INDEX_NAME}", msgspec.json.encode(index), replication=self.replication
        )
        await self.dfs.mkdir(f"{self._dir(index.output)}/committed", parents=True)
        try:
            await self.dfs.rename(attempt_dir, self.committed_dir(index.output, index.instance))
        except AlreadyExistsError:
            await self.dfs.delete(attempt_dir, recursive=True)
            return False
        return True

    async def _upload(self, local: Path, remote: str) -> None:
        await upload_file(
            self.dfs, local, remote, replication=self.replication, piece_bytes=self.config.fetch_piece_bytes
        )

    async def index(self, output: str, instance: int) -> OutputIndex:
        path = f"{self.committed_dir(output, instance)}/{INDEX_NAME}"
        try:
            data = await self.dfs.read(path)
        except NotFoundError:
            raise NotFoundError(f"streamline output {output} instance {instance}: not published in Pangu") from None
        try:
            return msgspec.json.decode(data, type=OutputIndex)
        except msgspec.DecodeError as exc:
            raise DataCorruptionError(f"streamline index pangu:{path}: {exc}") from None

    async def fetch(
        self, output: str, instances: Sequence[int], partition: int, *, sort: bool = False, key: str = "key"
    ) -> AsyncIterator[pa.RecordBatch]:
        """The records of ``partition`` of every published producer instance, merged by ``key`` when ``sort``."""
        sources = []
        for instance in instances:
            index = await self.index(output, instance)
            if not 0 <= partition < len(index.partitions):
                raise InvalidArgumentError(f"{output}/{instance}: partition {partition} of {len(index.partitions)}")
            entry = index.partitions[partition]
            path = f"{self.committed_dir(output, instance)}/{part_name(partition)}"
            sources.append(PanguSource(self.dfs, path, entry.length, self.config.fetch_piece_bytes))
        async for batch in self.reader.read(sources, sort=sort, key=key):
            yield batch


async def upload_file(
    dfs: DfsClient, local: Path, remote: str, *, replication: int = 0, piece_bytes: int = 1 << 20
) -> None:
    """Copy the local file ``local`` to Pangu's ``remote`` (replaced), ``piece_bytes`` at a time — never the whole
    file in memory; a copy that fails leaves no file."""
    writer = await dfs.create(remote, overwrite=True, replication=replication)
    f: BinaryIO = await asyncio.to_thread(open, local, "rb")
    try:
        while True:
            with translating("read", local):
                data = await asyncio.to_thread(f.read, piece_bytes)
            if not data:
                break
            await writer.write(data)
        await writer.close()
    except BaseException:
        await writer.abort(remove=True)
        raise
    finally:
        f.close()
