"""A process's output, kept bounded while it runs and for a while after it ends (docs/sched.md, "Logs").

A process writes ``stdout.log`` and ``stderr.log`` in its work dir (opened ``O_APPEND`` by its shim). Each
stream is read as one *logical* stream of bytes numbered from 0 since the process started; only its tail is
kept:

* **While it runs** :meth:`LogKeeper.rotate` (each supervisor poll) looks at each stream; one larger than half of
  ``max_stream_bytes`` has its last half copied to ``<root>/logs/<proc id>/<stream>.old`` and is truncated to 0
  (logrotate's copytruncate). The stream then holds ``.old`` + what was written since: at most
  ``max_stream_bytes`` at each check (a process writing faster than that between two polls goes over by what it
  wrote meanwhile). What was dropped is counted (``dropped``, stored in ``meta``), so offsets stay valid across
  rotations. Output written in the instant between the copy and the truncation is lost, as with copytruncate.
* **When it is forgotten** (its end was reported) :meth:`LogKeeper.keep` rotates it a last time and moves the
  files out of the work dir (which is then deleted) into ``<root>/logs/<proc id>/``.
* **Retention** per machine: at most ``retain_count`` ended processes' logs, ``retain_bytes`` in all, none older
  than ``retain_age_s`` (from when the process ended); the oldest go first. A worker started again under the
  same name replaces its earlier run's log.

The files in a work dir belong to the process (with ``app_uids`` its own uid may replace them): they are opened
with ``O_NOFOLLOW`` and read, rotated or kept only if they are regular files with a single link, so a symlink or
hard link planted there reads as empty and is never truncated.
"""

from __future__ import annotations

import collections
import contextlib
import enum
import logging
import os
import stat
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

import msgspec

from feitian.errors import FeitianError, InvalidArgumentError, NotFoundError
from feitian.runtime.files import atomic_write, ensure_dir
from feitian.sched.tubo.trash import Trash

__all__ = ["LogKeeper", "LogLimits", "LogRead", "LogStream"]

log = logging.getLogger(__name__)

MAX_READ_BYTES = 1 << 20  # the most one read returns (the RPC reply's bound)
_COPY_CHUNK = 1 << 20


class LogStream(enum.Enum):
    STDOUT = "stdout"
    STDERR = "stderr"


class LogLimits(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    max_stream_bytes: int = 8 << 20  # per process and stream: its tail is kept
    retain_count: int = 1_000  # ended processes whose logs a machine keeps
    retain_bytes: int = 1 << 30  # their logs' bytes in all
    retain_age_s: float = 7 * 86_400.0  # after the process ended

    def validate(self) -> LogLimits:
        if not 4096 <= self.max_stream_bytes <= 1 << 40:
            raise InvalidArgumentError(f"tubo: log max_stream_bytes {self.max_stream_bytes} not in 4 KiB..1 TiB")
        if self.retain_count < 0 or self.retain_bytes < 0 or self.retain_age_s < 0:
            raise InvalidArgumentError("tubo: log retain_count, retain_bytes and retain_age_s must be 0 or more")
        return self


class _Meta(msgspec.Struct):
    app_id: str
    ended_at_ns: int = 0  # wall clock; 0 while the process runs
    dropped: dict[str, int] = msgspec.field(default_factory=dict)  # stream -> bytes dropped from its start


class LogRead(msgspec.Struct, frozen=True, kw_only=True):
    """Bytes ``[offset, offset + len(data))`` of a stream; ``first``..``end`` is what is kept of it now."""

    data: bytes
    offset: int
    first: int
    end: int
    running: bool


@dataclass
class _Retained:
    ended_at_ns: int
    size: int


class LogKeeper:
    def __init__(self, root: Path, limits: LogLimits, trash: Trash) -> None:
        self.root = Path(root)
        self.dir = ensure_dir(self.root / "logs")
        self.limits = limits.validate()
        self.trash = trash
        self._meta: dict[str, _Meta] = {}
        self.retained: collections.OrderedDict[str, _Retained] = collections.OrderedDict()  # oldest first

    # -- lifecycle
    def load(self, known: set[str], now_ns: int) -> None:
        """After a Tubo restart: index what is kept (``known``: the processes that have a record). A log of a
        process no record knows any more counts as ended now."""
        found: list[tuple[int, str]] = []
        for path in self.dir.iterdir():
            try:
                meta = msgspec.json.decode((path / "meta").read_bytes(), type=_Meta)
            except (OSError, msgspec.DecodeError, msgspec.ValidationError):
                self.trash.put(path)
                continue
            self._meta[path.name] = meta
            if path.name in known:
                continue
            if not meta.ended_at_ns:
                meta.ended_at_ns = now_ns
                self._save(path.name, meta)
            found.append((meta.ended_at_ns, path.name))
        for ended, name in sorted(found):
            self.retained[name] = _Retained(ended, _dir_bytes(self.dir / name))
        self.retire(now_ns)

    def starting(self, proc_id: str, app_id: str) -> None:
        """A process starts under ``proc_id``: an earlier run's kept log of that id goes."""
        self._drop(proc_id)
        self._meta[proc_id] = _Meta(app_id)

    def rotate(self, proc_id: str, app_id: str, work_dir: Path) -> None:
        """Keep only the tail of each stream of a running process (see the module docstring). A rotation that
        fails (the disk full) is logged and tried again at the next check: the stream grows meanwhile."""
        meta = self._meta.setdefault(proc_id, _Meta(app_id))
        half = self.limits.max_stream_bytes // 2
        for stream in LogStream:
            fd = _open_regular(work_dir / f"{stream.value}.log", os.O_RDWR)
            if fd < 0:
                continue
            old = self._path(proc_id, stream, "old")
            tmp = old.with_suffix(".tmp")
            try:
                size = os.fstat(fd).st_size
                if size <= half:
                    continue
                old_size = _size(old)
                ensure_dir(old.parent)
                with open(tmp, "wb") as out:
                    os.lseek(fd, size - half, os.SEEK_SET)
                    _copy(fd, out)  # up to the end now: what was written meanwhile too
                # The tail first, then the truncation: a crash in between repeats bytes rather than losing them.
                os.replace(tmp, old)
                os.ftruncate(fd, 0)
                meta.dropped[stream.value] = meta.dropped.get(stream.value, 0) + old_size + size - half
                self._save(proc_id, meta)
            except (OSError, FeitianError) as exc:
                log.warning("tubo: rotating the %s of %s failed (%s); tried again later", stream.value, proc_id, exc)
                with contextlib.suppress(OSError):
                    tmp.unlink()
            finally:
                os.close(fd)

    def keep(self, proc_id: str, app_id: str, work_dir: Path, ended_at_ns: int, now_ns: int) -> None:
        """The process is forgotten: its logs leave its work dir (about to be deleted) and are retained."""
        meta = self._meta.setdefault(proc_id, _Meta(app_id))
        self.rotate(proc_id, app_id, work_dir)
        meta.ended_at_ns = ended_at_ns or now_ns
        try:
            ensure_dir(self.dir / proc_id)
            for stream in LogStream:
                source = work_dir / f"{stream.value}.log"
                with contextlib.suppress(FileNotFoundError):
                    if stat.S_ISREG(os.lstat(source).st_mode):  # anything else the process put there is not kept
                        os.replace(source, self._path(proc_id, stream, "log"))
            self._save(proc_id, meta)
        except (OSError, FeitianError) as exc:  # not kept (the disk full): deleted with the work dir
            log.warning("tubo: keeping the log of %s failed (%s); dropped", proc_id, exc)
            self._drop(proc_id)
            return
        self.retained[proc_id] = _Retained(meta.ended_at_ns, _dir_bytes(self.dir / proc_id))
        self.retire(now_ns)

    def retire(self, now_ns: int) -> list[str]:
        """Drop the oldest kept logs beyond the count and byte bounds, and those past the age bound."""
        dropped: list[str] = []
        total = sum(r.size for r in self.retained.values())
        max_age_ns = int(self.limits.retain_age_s * 1e9)
        while self.retained:
            name, oldest = next(iter(self.retained.items()))
            if (
                len(self.retained) <= self.limits.retain_count
                and total <= self.limits.retain_bytes
                and now_ns - oldest.ended_at_ns <= max_age_ns
            ):
                break
            total -= oldest.size
            self._drop(name)
            dropped.append(name)
        return dropped

    # -- reading
    def read(
        self,
        proc_id: str,
        app_id: str,
        stream: LogStream,
        *,
        work_dir: Path | None,
        running: bool,
        offset: int | None,
        length: int,
    ) -> LogRead:
        """``length`` bytes (at most :data:`MAX_READ_BYTES`) from ``offset`` (None: the last ``length``
        bytes); an offset before what is kept starts at the first byte kept. ``work_dir``: the process has a
        record (its files are still there; the caller checked its application). NotFoundError when nothing of it
        is kept (or it is another application's)."""
        meta = self._meta.get(proc_id)
        if work_dir is None and (meta is None or meta.app_id != app_id):
            raise NotFoundError(f"no log of process {proc_id!r} is kept on this machine", proc_id=proc_id)
        length = max(0, min(length, MAX_READ_BYTES))
        first = meta.dropped.get(stream.value, 0) if meta else 0
        current = (work_dir if work_dir is not None else self.dir / proc_id) / f"{stream.value}.log"
        parts = [self._path(proc_id, stream, "old"), current]
        fds = [_open_regular(p, os.O_RDONLY) for p in parts]
        try:
            sizes = [os.fstat(fd).st_size if fd >= 0 else 0 for fd in fds]
            end = first + sum(sizes)
            start = max(first, end - length) if offset is None else min(max(first, offset), end)
            data = bytearray()
            at = first
            for fd, size in zip(fds, sizes, strict=True):
                lo, hi = max(start, at), min(start + length, at + size)
                if fd >= 0 and hi > lo:
                    data += os.pread(fd, hi - lo, lo - at)
                at += size
        finally:
            for fd in fds:
                if fd >= 0:
                    os.close(fd)
        return LogRead(data=bytes(data), offset=start, first=first, end=end, running=running)

    # -- internals
    def _path(self, proc_id: str, stream: LogStream, kind: str) -> Path:
        return self.dir / proc_id / f"{stream.value}.{kind}"

    def _save(self, proc_id: str, meta: _Meta) -> None:
        ensure_dir(self.dir / proc_id)
        atomic_write(self.dir / proc_id / "meta", msgspec.json.encode(meta))

    def _drop(self, proc_id: str) -> None:
        self.retained.pop(proc_id, None)
        self._meta.pop(proc_id, None)
        self.trash.put(self.dir / proc_id)


def _open_regular(path: Path, flags: int) -> int:
    """A descriptor of ``path`` if it is a regular file with one link (not a symlink, FIFO, device, or a hard
    link to some other file), else -1."""
    try:
        fd = os.open(path, flags | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC)
    except OSError:
        return -1
    found = os.fstat(fd)
    if not stat.S_ISREG(found.st_mode) or found.st_nlink != 1:
        os.close(fd)
        return -1
    return fd


def _copy(fd: int, out: BinaryIO) -> None:
    while chunk := os.read(fd, _COPY_CHUNK):
        out.write(chunk)


def _size(path: Path) -> int:
    try:
        return path.stat().st_size
    except OSError:
        return 0


def _dir_bytes(path: Path) -> int:
    total = 0
    with contextlib.suppress(OSError):
        for entry in os.scandir(path):
            with contextlib.suppress(OSError):
                total += entry.stat(follow_symlinks=False).st_size
    return total
