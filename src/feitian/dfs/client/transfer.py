"""Copies between local files and Pangu, and inside Pangu: what ``feitian dfs put / get / cat / cp`` do.

* **Local problems** — a missing file, no permission, a directory where a file is expected, a missing parent
  directory, a full disk — become feitian errors naming the local path (:func:`feitian.runtime.files.os_error`:
  exit 4, 6, 2, 4, 3), found before anything remote changes where possible (the source is opened first).
* **Downloads** go to a temporary file beside the target, renamed over it once complete: a failed ``get``
  leaves no partial file and does not clobber an existing one. A target that is not a regular file (``/dev/null``,
  a pipe) is written directly.
* **Uploads and copies** that fail remove the remote file they were creating (``FileWriter.abort(remove=True)``,
  as HDFS ``put`` removes its ``._COPYING_`` file), so no half-written file is left open for writing.
* **Unix habits**: a destination that is an existing directory, or ends with ``/``, receives the source under its
  own name (:func:`into_remote_dir`, :func:`into_local_dir`).
"""

from __future__ import annotations

import contextlib
import errno
import os
import posixpath
import tempfile
from collections.abc import Callable, Iterator
from typing import IO, TYPE_CHECKING

from feitian.dfs.core import FileStatus, FileType, NamespaceConfig, NodeKind
from feitian.dfs.core.paths import join_path, split_path
from feitian.errors import (
    ConflictError,
    ConflictReason,
    FeitianError,
    InvalidArgumentError,
    NotFoundError,
    PermissionDeniedError,
)
from feitian.runtime.files import os_error

if TYPE_CHECKING:
    from feitian.dfs.client.client import DfsClient

__all__ = [
    "PIECE_BYTES",
    "copy_file",
    "download",
    "into_local_dir",
    "into_remote_dir",
    "local_sink",
    "open_local",
    "remote_file",
    "upload",
]

PIECE_BYTES = 32 << 20  # bytes per read from Pangu (and per write handed to a writer)
_PATHS = NamespaceConfig()
Progress = Callable[[int], None]


def _normalized(op: str, path: str) -> str:
    """A well-formed remote path (InvalidArgumentError naming ``op`` otherwise), without a trailing ``/``."""
    return join_path(split_path(op, path, _PATHS))


async def into_remote_dir(dfs: DfsClient, op: str, name: str, dst: str) -> str:
    """``dst``, or ``dst/name`` when ``dst`` ends with ``/`` or is an existing directory."""
    target = _normalized(op, dst)
    wants_dir = dst.endswith("/") and target != "/"
    try:
        is_dir = wants_dir or target == "/" or (await dfs.stat(target)).kind is NodeKind.DIR
    except (NotFoundError, PermissionDeniedError):  # the operation itself then says what is wrong
        is_dir = False
    except ConflictError as exc:  # a component is a file: the operation itself says so
        if exc.fields.get("reason") != ConflictReason.NOT_A_DIRECTORY:
            raise
        is_dir = False
    if not is_dir:
        return target
    if not name:
        raise InvalidArgumentError(f"{op} {dst}: a directory; stdin has no name to give the file there")
    return posixpath.join(target, name)


def into_local_dir(name: str, local: str) -> str:
    """``local``, or ``local/name`` when ``local`` ends with ``/`` or is an existing directory."""
    if local.endswith("/") or os.path.isdir(local):
        return os.path.join(local, name)
    return local


async def remote_file(dfs: DfsClient, op: str, path: str) -> FileStatus:
    """The status of the file at ``path``; ConflictError (exit 5, like reading one) for a directory."""
    status = await dfs.stat(_normalized(op, path))
    if status.kind is NodeKind.DIR:
        raise ConflictError(
            f"{op} {path}: is a directory",
            hint=f"{op} works on a file; `feitian dfs ls {path}` lists the directory",
            path=path,
            reason=ConflictReason.IS_A_DIRECTORY,
        )
    return status


def open_local(op: str, path: str) -> IO[bytes]:
    """The local file ``path`` opened for reading; a directory, a missing file or a refusal is a clear error."""
    try:
        if os.path.isdir(path):
            raise IsADirectoryError(errno.EISDIR, "Is a directory", path)
        return open(path, "rb")
    except OSError as exc:
        raise _local_error(exc, f"{op}: read local file", path) from None


def _local_error(exc: OSError, op: str, path: str) -> FeitianError:
    if exc.errno == errno.EISDIR:
        return InvalidArgumentError(f"{op} {path}: is a directory", hint="give a file", path=path)
    return os_error(exc, op, path)


@contextlib.contextmanager
def local_sink(op: str, path: str) -> Iterator[IO[bytes]]:
    """A file to write the local file ``path`` through: a temporary file in the same directory, renamed over
    ``path`` when the body succeeds, removed when it fails. A non-regular target (``/dev/null``) is written
    directly."""
    where = f"{op}: write local file"
    if os.path.exists(path) and not os.path.isfile(path):
        try:
            direct = open(path, "wb")  # noqa: SIM115 - closed below
        except OSError as exc:
            raise _local_error(exc, where, path) from None
        with direct:
            yield direct
        return
    directory = os.path.dirname(path) or "."
    try:
        fd, tmp = tempfile.mkstemp(prefix=f".{os.path.basename(path)}.", suffix=".feitian-get", dir=directory)
    except OSError as exc:
        raise _local_error(exc, where, path) from None
    try:
        with os.fdopen(fd, "wb") as out:
            yield out
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o666 & ~umask)  # as open() would have created it; mkstemp makes 0600
        os.replace(tmp, path)
    except OSError as exc:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise _local_error(exc, where, path) from None
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise


async def download(
    dfs: DfsClient, remote: str, out: IO[bytes], start: int, length: int, progress: Progress | None = None
) -> int:
    """Write ``length`` bytes of ``remote`` from ``start`` to ``out``, piece by piece (each verified)."""
    from feitian.dfs.client.read import FileReader

    reader = FileReader(dfs, remote)
    pos, end = start, start + length
    while pos < end:
        data = await reader.read(pos, min(PIECE_BYTES, end - pos))
        out.write(data)
        pos += len(data)
        if progress is not None:
            progress(len(data))
    out.flush()
    return pos - start


async def upload(
    dfs: DfsClient,
    source: IO[bytes],
    remote: str,
    *,
    overwrite: bool = False,
    replication: int = 0,
    chunk_size_bytes: int = 0,
    file_type: FileType | str = FileType.NORMAL,
    progress: Progress | None = None,
) -> int:
    """Create ``remote`` from what ``source`` holds; durable on every replica on return (the length). On any
    failure the file being created is removed."""
    writer = await dfs.create(
        remote, overwrite=overwrite, replication=replication, chunk_size_bytes=chunk_size_bytes, file_type=file_type
    )
    step = min(PIECE_BYTES, writer.chunk_size) if writer.log_file else PIECE_BYTES
    try:
        while block := source.read(step):
            await writer.write(block)
            if progress is not None:
                progress(len(block))
        length: int = await writer.close()
    except BaseException:
        await writer.abort(remove=True)
        raise
    return length


async def copy_file(dfs: DfsClient, src: str, dst: str, *, overwrite: bool = False) -> int:
    """Copy the file ``src`` to ``dst`` through this client (every block verified on the way), with the source's
    replication, chunk size and type; ``dst`` an existing directory receives it under its name. Returns the
    length. Refused: ``src`` a directory, ``dst`` the source itself."""
    status = await remote_file(dfs, "cp", src)
    target = await into_remote_dir(dfs, "cp", posixpath.basename(status.path), dst)
    if target == status.path:
        raise InvalidArgumentError(f"cp {src} {dst}: source and destination are the same file")
    writer = await dfs.create(
        target,
        overwrite=overwrite,
        replication=status.replication,
        chunk_size_bytes=status.chunk_size_bytes,
        file_type=status.file_type or FileType.NORMAL,
    )
    from feitian.dfs.client.read import FileReader

    reader = FileReader(dfs, status.path)
    step = min(PIECE_BYTES, status.chunk_size_bytes)
    try:
        pos = 0
        while pos < status.length:
            data = await reader.read(pos, min(step, status.length - pos))
            await writer.write(data)
            pos += len(data)
        length: int = await writer.close()
    except BaseException:
        await writer.abort(remove=True)
        raise
    return length
