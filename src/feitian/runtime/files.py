"""The fsync discipline of feitian, in one place.

Every durable file feitian writes goes through this module:

* :func:`atomic_write` replaces a small file so that after a crash it holds either the old or the new
  contents, never a mix: write a temporary file in the same directory, fsync it, ``rename`` it over the
  target, then fsync the directory (without the last step the rename itself may be lost).
* :func:`fsync_dir` makes creations, renames and deletions in a directory durable.
* :func:`os_error` translates an :class:`OSError` into the feitian error tree, once, at this boundary. A full
  disk (``ENOSPC``/``EDQUOT``) becomes a retryable :class:`~feitian.errors.UnavailableError` that says so and
  names the path (``reason="disk_full"``); ``EIO`` while reading becomes
  :class:`~feitian.errors.DataCorruptionError` (the stored bytes cannot be returned), while writing or syncing
  an :class:`~feitian.errors.UnavailableError` with ``reason="io_error"``.
* :class:`DirLock` keeps two processes (or two opens in one process) from writing one directory at once.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path

from feitian.errors import (
    AlreadyExistsError,
    ConflictError,
    DataCorruptionError,
    DataCorruptionReason,
    FeitianError,
    InvalidArgumentError,
    NotFoundError,
    PermissionDeniedError,
    UnavailableError,
    UnavailableReason,
)

__all__ = [
    "DirLock",
    "atomic_write",
    "ensure_dir",
    "fsync_dir",
    "is_disk_full",
    "os_error",
    "read_bytes",
    "remove_durably",
    "translating",
    "write_all",
]

_DISK_FULL = frozenset({errno.ENOSPC, errno.EDQUOT})
_READ_OPS = frozenset({"read", "open", "scan", "load", "list"})


def is_disk_full(exc: BaseException) -> bool:
    """Whether ``exc`` (an OSError or a translated error) means the filesystem is out of space or quota."""
    if isinstance(exc, OSError):
        return exc.errno in _DISK_FULL
    return isinstance(exc, FeitianError) and exc.fields.get("reason") == UnavailableReason.DISK_FULL


def os_error(exc: OSError, op: str, path: str | os.PathLike[str]) -> FeitianError:
    """Translate ``exc``, raised by operation ``op`` (a verb: "write", "fsync", "read"...) on ``path``."""
    code = exc.errno if exc.errno is not None else 0
    name = errno.errorcode.get(code, str(code))
    where = f"{op} {os.fspath(path)}"
    detail = exc.strerror or str(exc)
    fields: dict[str, str] = {"path": os.fspath(path), "errno": name, "op": op}
    if code in _DISK_FULL:
        what = "quota exceeded" if code == errno.EDQUOT else "no space left on device"
        return UnavailableError(
            f"{where}: disk full ({what})",
            hint=f"free space on the filesystem holding {os.fspath(path)}; writes succeed again after that",
            reason=UnavailableReason.DISK_FULL,
            **fields,
        )
    if code == errno.EIO:
        if op in _READ_OPS:
            return DataCorruptionError(
                f"{where}: the device returned an I/O error; the stored bytes cannot be read",
                hint="check the disk (dmesg); restore this replica from its peers",
                reason=DataCorruptionReason.IO_ERROR,
                **fields,
            )
        return UnavailableError(
            f"{where}: the device reported an I/O error; the written data may not be durable",
            hint="check the disk (dmesg); reopen the store to continue from what is on disk",
            reason=UnavailableReason.IO_ERROR,
            **fields,
        )
    if code == errno.EROFS:
        return UnavailableError(f"{where}: read-only filesystem", reason=UnavailableReason.READ_ONLY, **fields)
    if code in (errno.EACCES, errno.EPERM):
        return PermissionDeniedError(f"{where}: permission denied", **fields)
    if code == errno.ENOENT:
        return NotFoundError(f"{where}: no such file or directory", **fields)
    if code == errno.EEXIST:
        return AlreadyExistsError(f"{where}: already exists", **fields)
    if code in (errno.ENOTDIR, errno.EISDIR, errno.ENAMETOOLONG, errno.EINVAL):
        return InvalidArgumentError(f"{where}: {detail}", **fields)
    return UnavailableError(f"{where}: {detail} ({name})", reason=UnavailableReason.OS_ERROR, **fields)


@contextlib.contextmanager
def translating(op: str, path: str | os.PathLike[str]) -> Iterator[None]:
    """Run the body, translating an :class:`OSError` with :func:`os_error`."""
    try:
        yield
    except OSError as exc:
        raise os_error(exc, op, path) from exc


def fsync_dir(path: str | os.PathLike[str]) -> None:
    """Make the entries of directory ``path`` (creations, renames, deletions) durable."""
    with translating("fsync", path):
        fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


def ensure_dir(path: str | os.PathLike[str]) -> Path:
    """Create directory ``path`` (and parents) if missing, durably: each new level is fsynced in its parent
    directory."""
    target = Path(path)
    missing: list[Path] = []
    probe = target
    while not probe.exists():
        missing.append(probe)
        if probe.parent == probe:
            break
        probe = probe.parent
    for level in reversed(missing):
        with translating("mkdir", level), contextlib.suppress(FileExistsError):
            level.mkdir()
        fsync_dir(level.parent)
    if not target.is_dir():
        raise InvalidArgumentError(f"mkdir {target}: exists and is not a directory", path=str(target))
    return target


def write_all(fd: int, data: bytes | bytearray | memoryview, offset: int) -> None:
    """``pwrite`` all of ``data`` at ``offset`` (a short write is continued, not an error). Raises OSError."""
    view = memoryview(data)
    while view:
        written = os.pwrite(fd, view, offset)
        view = view[written:]
        offset += written


def atomic_write(path: str | os.PathLike[str], data: bytes | bytearray | memoryview) -> None:
    """Durably replace the file at ``path`` with ``data`` (temp file, fsync, rename, fsync of the directory).

    A crash at any point leaves either the old file or the new one. On failure the temporary file is removed
    and the error is translated (a full disk raises an UnavailableError with ``reason="disk_full"``).
    """
    target = Path(path)
    directory = target.parent
    with translating("create", directory):
        fd, tmp_name = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=directory)
    try:
        with translating("write", tmp_name):
            try:
                write_all(fd, data, 0)
                os.fsync(fd)
            finally:
                os.close(fd)
        with translating("rename", target):
            os.replace(tmp_name, target)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp_name)
        raise
    fsync_dir(directory)


def read_bytes(path: str | os.PathLike[str]) -> bytes:
    """The contents of ``path``; OS errors translated (EIO becomes DataCorruptionError)."""
    with translating("read", path):
        return Path(path).read_bytes()


def remove_durably(paths: list[Path]) -> None:
    """Delete ``paths`` (missing ones are fine), then fsync each parent directory once."""
    parents: set[Path] = set()
    for path in paths:
        with translating("remove", path), contextlib.suppress(FileNotFoundError):
            path.unlink()
        parents.add(path.parent)
    for parent in sorted(parents):
        fsync_dir(parent)


class SpoolFile:
    """A scratch file filled at offsets and read back whole (e.g. a snapshot arriving in chunks). Not durable: a
    crash may leave it partial, and its owner starts it again. Blocking: call from a worker thread. OS errors are
    translated (a full disk raises UnavailableError with ``reason="disk_full"``)."""

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = Path(path)

    def truncate(self) -> None:
        """Make the file exist and be empty (its directory is created if missing)."""
        ensure_dir(self.path.parent)
        with translating("create", self.path), open(self.path, "wb"):
            pass

    def write_at(self, offset: int, data: bytes | bytearray | memoryview) -> None:
        with translating("write", self.path):
            fd = os.open(self.path, os.O_WRONLY)
            try:
                write_all(fd, data, offset)
            finally:
                os.close(fd)

    def read(self) -> bytes:
        return read_bytes(self.path)

    def remove(self) -> None:
        with translating("remove", self.path), contextlib.suppress(FileNotFoundError):
            self.path.unlink()


class DirLock:
    """An exclusive ``flock`` on ``<directory>/LOCK``, held until :meth:`release`.

    ``flock`` locks belong to an open file description, so a second open in the same process conflicts too —
    which is what we want: two WAL objects appending to one directory would interleave records.
    """

    def __init__(self, directory: str | os.PathLike[str]) -> None:
        self.path = Path(directory) / "LOCK"
        with translating("open", self.path):
            self._fd: int | None = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(self._fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as exc:
            os.close(self._fd)
            self._fd = None
            if exc.errno in (errno.EWOULDBLOCK, errno.EAGAIN):
                raise ConflictError(
                    f"lock {self.path}: the directory is already open (by this or another process)",
                    path=str(self.path),
                ) from exc
            raise os_error(exc, "lock", self.path) from exc

    def release(self) -> None:
        if self._fd is not None:
            os.close(self._fd)  # closing the descriptor drops the flock
            self._fd = None
