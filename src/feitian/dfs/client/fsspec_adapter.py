"""``pangu://`` for fsspec, so pandas, pyarrow and friends read and write Pangu files::

    import feitian.dfs.client.client                        # registers the protocol (or the fsspec entry point does)
    df = pandas.read_csv("pangu:///data/a.csv")      # the local cluster: $FEITIAN_CLUSTER or the default
    df.to_parquet("pangu:///data/a.parquet", storage_options={"cluster": "/tmp/c"})

URLs are ``pangu:///absolute/path`` (``pangu://absolute/path`` means the same). Storage options: ``cluster``
(a local cluster directory), ``identity``, ``masters`` (addresses, for a cluster without a local directory; no
security then). Files are written through one writer each (``wb`` replaces, ``ab`` appends) and become
visible when closed.
"""

from __future__ import annotations

from typing import Any

from fsspec.spec import AbstractBufferedFile, AbstractFileSystem  # type: ignore[import-untyped]

from feitian.base.units import MiB
from feitian.dfs.client.client import DfsClient
from feitian.dfs.client.sync import SyncDfs
from feitian.dfs.core import FileStatus, NodeKind
from feitian.errors import AlreadyExistsError, ConflictError, FeitianError, NotFoundError

__all__ = ["PanguFile", "PanguFileSystem"]


def _translate(exc: FeitianError, path: str) -> Exception:
    if isinstance(exc, NotFoundError):
        return FileNotFoundError(2, exc.message, path)
    if isinstance(exc, AlreadyExistsError):
        return FileExistsError(17, exc.message, path)
    return exc


class PanguFileSystem(AbstractFileSystem):  # type: ignore[misc]
    protocol = ("pangu",)
    root_marker = "/"

    def __init__(
        self,
        cluster: str | None = None,
        identity: str | None = None,
        masters: list[str] | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        if masters:
            from feitian.rpc import Client, ClientConfig

            async def connect() -> DfsClient:
                return DfsClient(Client(ClientConfig(name="pangu-fsspec")), list(masters))

            self.dfs = SyncDfs(connect)
        else:
            self.dfs = SyncDfs.local(cluster, identity=identity)

    @classmethod
    def _strip_protocol(cls, path: Any) -> Any:
        if isinstance(path, list):
            return [cls._strip_protocol(p) for p in path]
        text = str(path)
        if text.startswith("pangu://"):
            text = text[len("pangu://") :]
        text = "/" + text.lstrip("/")
        return text.rstrip("/") or "/"

    def _call(self, path: str, fn: Any, *args: Any, **kwargs: Any) -> Any:
        try:
            return fn(*args, **kwargs)
        except FeitianError as exc:
            raise _translate(exc, path) from exc

    @staticmethod
    def _entry(status: FileStatus) -> dict[str, Any]:
        is_dir = status.kind is NodeKind.DIR
        return {
            "name": status.path,
            "size": 0 if is_dir else status.length,
            "type": "directory" if is_dir else "file",
            "replication": status.replication,
            "mtime": status.mtime_ns / 1e9,
            "created": status.ctime_ns / 1e9,
        }

    def info(self, path: str, **kwargs: Any) -> dict[str, Any]:
        path = self._strip_protocol(path)
        return self._entry(self._call(path, self.dfs.stat, path))

    def ls(self, path: str, detail: bool = True, **kwargs: Any) -> list[Any]:
        path = self._strip_protocol(path)
        status = self._call(path, self.dfs.stat, path)
        if status.kind is NodeKind.FILE:
            entries = [self._entry(status)]
        else:
            base = path.rstrip("/")
            entries = [
                {
                    "name": f"{base}/{e.name}",
                    "size": e.length,
                    "type": "directory" if e.kind is NodeKind.DIR else "file",
                }
                for e in self._call(path, self.dfs.ls, path)
            ]
        return entries if detail else [e["name"] for e in entries]

    def mkdir(self, path: str, create_parents: bool = True, **kwargs: Any) -> None:
        path = self._strip_protocol(path)
        self._call(path, self.dfs.mkdir, path, parents=create_parents)

    def makedirs(self, path: str, exist_ok: bool = False) -> None:
        path = self._strip_protocol(path)
        if not exist_ok and self.dfs.exists(path):
            raise FileExistsError(17, f"mkdir {path}: exists", path)
        self._call(path, self.dfs.mkdir, path, parents=True)

    def rmdir(self, path: str) -> None:
        path = self._strip_protocol(path)
        self._call(path, self.dfs.rm, path)

    def rm_file(self, path: str) -> None:
        path = self._strip_protocol(path)
        self._call(path, self.dfs.rm, path)

    def _rm(self, path: str) -> None:
        self.rm_file(path)

    def rm(self, path: Any, recursive: bool = False, maxdepth: Any = None) -> None:
        for p in path if isinstance(path, list) else [path]:
            stripped = self._strip_protocol(p)
            self._call(stripped, self.dfs.rm, stripped, recursive=recursive)

    def mv(self, path1: str, path2: str, recursive: bool = False, maxdepth: Any = None, **kwargs: Any) -> None:
        src, dst = self._strip_protocol(path1), self._strip_protocol(path2)
        self._call(src, self.dfs.mv, src, dst, overwrite=True)

    def cat_file(self, path: str, start: int | None = None, end: int | None = None, **kwargs: Any) -> bytes:
        path = self._strip_protocol(path)
        size = self.info(path)["size"]
        lo = 0 if start is None else (start if start >= 0 else max(0, size + start))
        hi = size if end is None else (min(end, size) if end >= 0 else max(0, size + end))
        if hi <= lo:
            return b""
        data: bytes = self._call(path, self.dfs.read, path, lo, hi - lo)
        return data

    def pipe_file(self, path: str, value: bytes, mode: str = "overwrite", **kwargs: Any) -> None:
        path = self._strip_protocol(path)
        self._call(path, self.dfs.write, path, value, overwrite=mode == "overwrite")

    def created(self, path: str) -> float:
        return float(self.info(path)["created"])

    def modified(self, path: str) -> float:
        return float(self.info(path)["mtime"])

    def _open(
        self,
        path: str,
        mode: str = "rb",
        block_size: Any = None,
        autocommit: bool = True,
        cache_options: Any = None,
        **kwargs: Any,
    ) -> PanguFile:
        path = self._strip_protocol(path)
        return PanguFile(self, path, mode, block_size or 8 * MiB, autocommit, cache_options=cache_options, **kwargs)


class PanguFile(AbstractBufferedFile):  # type: ignore[misc]
    def __init__(
        self, fs: PanguFileSystem, path: str, mode: str = "rb", block_size: int = 8 * MiB, *args: Any, **kw: Any
    ) -> None:
        self.writer: Any = None
        super().__init__(fs, path, mode, block_size, *args, **kw)

    def _fetch_range(self, start: int, end: int) -> bytes:
        end = min(end, self.size)
        if end <= start:
            return b""
        data: bytes = self.fs._call(self.path, self.fs.dfs.read, self.path, start, end - start)
        return data

    def _initiate_upload(self) -> None:
        dfs: SyncDfs = self.fs.dfs
        try:
            if "a" in self.mode:
                from feitian.dfs.client.sync import _open_append

                self.writer = dfs.run(_open_append(dfs.dfs, self.path))
            else:
                self.writer = dfs.run(dfs.dfs.create(self.path, overwrite="x" not in self.mode))
        except (FeitianError, ConflictError) as exc:
            raise _translate(exc, self.path) from exc

    def _upload_chunk(self, final: bool = False) -> bool:
        dfs: SyncDfs = self.fs.dfs
        if self.writer is None:
            self._initiate_upload()
        data = self.buffer.getvalue()
        if data:
            dfs.run(self.writer.write(data))
        if final:
            dfs.run(self.writer.close())
        return True
