"""Synchronous Pangu for scripts: file objects, and the same operations as :class:`~feitian.dfs.DfsClient`.

::

    with SyncDfs.local() as dfs:                       # the local cluster ($FEITIAN_CLUSTER or the default)
        with dfs.open("/data/a.csv", "w") as f:        # text or binary; "w", "x", "a", "r", "r+" (random)
            f.write("x,y\\n1,2\\n")
        print(dfs.open("/data/a.csv").read())

Like :class:`feitian.rpc.sync.SyncClient`, it runs its own event loop in one background thread and refuses to
be used from a thread that runs an asyncio loop (there, use ``DfsClient`` and ``await``).
"""

from __future__ import annotations

import io
from collections.abc import Awaitable, Callable, Coroutine, Iterator
from typing import Any, TypeVar

from feitian.base.units import MiB
from feitian.dfs.client.client import DfsClient, DfsClientConfig
from feitian.dfs.core import DeleteResult, DirEntry, FileStatus, MkdirResult, RenameResult
from feitian.errors import InvalidArgumentError
from feitian.runtime.loop_thread import LoopThread

__all__ = ["SyncDfs"]

T = TypeVar("T")


class SyncDfs:
    def __init__(self, connect: Callable[[], Awaitable[DfsClient]]) -> None:
        self._thread = LoopThread("SyncDfs")
        try:
            self.dfs: DfsClient = self.run(_await(connect()))
        except BaseException:
            self._thread.stop()
            raise

    @classmethod
    def local(
        cls, cluster: str | None = None, *, identity: str | None = None, config: DfsClientConfig | None = None
    ) -> SyncDfs:
        """A client of the local cluster at ``cluster`` (else ``$FEITIAN_CLUSTER``, else the default directory),
        acting as ``identity`` (default admin) — until Nuwa resolves names, the cluster directory is where the
        masters' addresses and the identities are."""
        import feitian.dfs

        connect_local: Callable[..., Awaitable[DfsClient]] = feitian.dfs.connect_local  # the deploy layer's
        return cls(lambda: connect_local(cluster, identity=identity, config=config))

    def run(self, coro: Coroutine[Any, Any, T]) -> T:
        return self._thread.run(coro)

    def close(self) -> None:
        if self._thread.closed:
            return
        self.run(self.dfs.rpc.close())
        self._thread.stop()

    def __enter__(self) -> SyncDfs:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- operations ----------------------------------------------------------------------------------------------

    def mkdir(self, path: str, *, parents: bool = True) -> MkdirResult:
        return self.run(self.dfs.mkdir(path, parents=parents))

    def stat(self, path: str) -> FileStatus:
        return self.run(self.dfs.stat(path))

    def exists(self, path: str) -> bool:
        return self.run(self.dfs.exists(path))

    def ls(self, path: str) -> list[DirEntry]:
        return self.run(self.dfs.list(path))

    def rm(self, path: str, *, recursive: bool = False) -> DeleteResult:
        return self.run(self.dfs.delete(path, recursive=recursive))

    def mv(self, src: str, dst: str, *, overwrite: bool = False) -> RenameResult:
        return self.run(self.dfs.rename(src, dst, overwrite=overwrite))

    def read(self, path: str, offset: int = 0, length: int = -1) -> bytes:
        return self.run(self.dfs.read(path, offset, length))

    def write(self, path: str, data: bytes, **create: Any) -> int:
        return self.run(self.dfs.write_file(path, data, **create))

    def append(self, path: str, data: bytes) -> int:
        return self.run(self.dfs.append(path, data))

    def tail(self, path: str, offset: int = 0, *, follow: bool = True) -> Iterator[bytes]:
        agen: Any = self.dfs.tail(path, offset, follow=follow)
        try:
            while True:
                try:
                    yield self.run(_anext(agen))
                except StopAsyncIteration:
                    return
        finally:
            self.run(agen.aclose())

    def open(self, path: str, mode: str = "r", *, buffer_size: int = 4 * MiB, **create: Any) -> Any:
        """A file object. ``r`` read; ``w`` create or replace; ``x`` create, fail if it exists; ``a`` append
        (created if missing); ``r+`` random writes (and reads). Add ``b`` for bytes, else text (UTF-8).
        ``create`` takes :meth:`DfsClient.create`'s settings (replication, chunk_size_bytes, file_type)."""
        binary = "b" in mode
        kind = mode.replace("b", "").replace("t", "")
        raw: io.RawIOBase
        if kind == "r":
            status = self.stat(path)
            raw = _ReadFile(self, path, status.length)
            buffered: Any = io.BufferedReader(raw, buffer_size)
        elif kind in ("w", "x", "a", "r+"):
            if kind == "a":
                writer = self.run(_open_append(self.dfs, path))
            elif kind == "r+":
                writer = self.run(self.dfs.open_write(path, mode="random"))
            else:
                writer = self.run(self.dfs.create(path, overwrite=kind == "w", **create))
            raw = _WriteFile(self, path, writer)
            buffered = io.BufferedWriter(raw, buffer_size)
        else:
            raise InvalidArgumentError(f"open {path}: mode {mode!r} is not one of r, w, x, a, r+ (with b or t)")
        return buffered if binary else io.TextIOWrapper(buffered, encoding="utf-8")


async def _await(awaitable: Awaitable[T]) -> T:
    return await awaitable


async def _anext(agen: Any) -> Any:
    return await agen.__anext__()


async def _open_append(dfs: DfsClient, path: str) -> Any:
    try:
        return await dfs.open_write(path)
    except Exception as exc:
        if getattr(exc, "code", "") != "not_found":
            raise
        return await dfs.create(path)


class _ReadFile(io.RawIOBase):
    def __init__(self, owner: SyncDfs, path: str, length: int) -> None:
        self.owner = owner
        self.path = path
        self.length = length
        self.pos = 0
        self.name = path

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def seek(self, offset: int, whence: int = io.SEEK_SET) -> int:
        base = {io.SEEK_SET: 0, io.SEEK_CUR: self.pos, io.SEEK_END: self.length}[whence]
        if base + offset < 0:
            raise InvalidArgumentError(f"seek {self.path}: negative position")
        self.pos = base + offset
        return self.pos

    def tell(self) -> int:
        return self.pos

    def readinto(self, buffer: Any) -> int:
        n = min(len(buffer), max(0, self.length - self.pos))
        if n == 0:
            return 0
        data = self.owner.read(self.path, self.pos, n)
        memoryview(buffer)[: len(data)] = data
        self.pos += len(data)
        return len(data)


class _WriteFile(io.RawIOBase):
    def __init__(self, owner: SyncDfs, path: str, writer: Any) -> None:
        self.owner = owner
        self.path = path
        self.writer = writer
        self.name = path

    def writable(self) -> bool:
        return True

    def readable(self) -> bool:
        return bool(self.writer.mode == "random")

    def seekable(self) -> bool:
        return bool(self.writer.mode == "random")

    def seek(self, offset: int, whence: int = io.SEEK_SET) -> int:
        base = {io.SEEK_SET: 0, io.SEEK_CUR: self.writer.tell(), io.SEEK_END: self.writer.length}[whence]
        return int(self.writer.seek(base + offset))

    def tell(self) -> int:
        return int(self.writer.tell())

    def write(self, data: Any) -> int:
        n: int = self.owner.run(self.writer.write(bytes(data)))
        return n

    def flush(self) -> None:
        if not self.closed and not self.writer.closed:
            self.owner.run(self.writer.flush())

    def close(self) -> None:
        if not self.closed:
            try:
                if not self.writer.closed:
                    self.owner.run(self.writer.close())
            finally:
                super().close()
