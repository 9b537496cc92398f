"""Package archives (FUXI-6): whatever is uploaded — a directory, a tar (plain, gzip, bzip2, xz) or a zip — is
checked entry by entry and rewritten in one canonical form, so the same tree always has the same digest.

**The canonical form** is a gzip-compressed POSIX (pax) tar whose entries are sorted by path, with mtime 0,
uid/gid 0, no owner names, mode 0755 for directories and executables (any execute bit set), 0644 for other
files, 0777 for symbolic links; hard links in an uploaded tar become regular files. **The digest** is the sha256
of the *uncompressed* canonical tar stream, so it names the content, not the compressor (another zlib may
compress the same tar differently; the digest does not change).

**What is refused** (InvalidArgumentError naming the archive, the entry and the problem): a file that is not an
archive; an entry with an absolute path or a ``..`` component, or a path over ``max_path_bytes``; the same path
twice; an entry beneath a symbolic link; a symbolic link whose target is absolute, climbs out of the package, or
uses ``..`` anywhere but at its start; device files, FIFOs and sockets; more than ``max_files`` entries or more
than ``max_unpacked_bytes`` of file contents. With those rules every link resolves inside the package, and
unpacking never writes outside its directory (it also opens every file with ``O_NOFOLLOW``).

:func:`unpack` applies the same checks to a blob fetched back (a blob is never trusted before its digest is
checked, and the digest is known only at its end), writes into a directory of its own and verifies the digest
at the end: the caller uses the directory only after :func:`unpack` returned.
"""

from __future__ import annotations

import contextlib
import gzip
import hashlib
import os
import posixpath
import shutil
import stat
import tarfile
import zipfile
import zlib
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import IO, BinaryIO, Literal

from feitian.errors import DataCorruptionError, InvalidArgumentError, NotFoundError, PermissionDeniedError
from feitian.runtime.files import fsync_dir

__all__ = ["PackInfo", "PackageLimits", "pack", "remove_tree", "unpack"]

GiB = 1 << 30
COPY_BYTES = 1 << 20
EXEC_BITS = stat.S_IXUSR | stat.S_IXGRP | stat.S_IXOTH
Kind = Literal["file", "dir", "symlink"]
_ARCHIVE_ERRORS = (tarfile.TarError, zipfile.BadZipFile, EOFError, zlib.error, gzip.BadGzipFile, ValueError)


@dataclass(frozen=True)
class PackageLimits:
    """The bounds of one package; over any of them an upload is refused (InvalidArgumentError) before a byte is
    stored, and a fetched blob over them is refused before it is used (DataCorruptionError)."""

    max_unpacked_bytes: int = 1 * GiB  # the sum of the sizes of its files
    max_files: int = 100_000  # entries: files, directories and links
    max_path_bytes: int = 1024  # one entry's path, UTF-8


@dataclass(frozen=True)
class PackInfo:
    digest: str  # sha256 of the uncompressed canonical tar, hex
    size: int  # bytes of the stored (gzip) blob
    unpacked_bytes: int
    files: int  # entries


@dataclass(frozen=True)
class _Entry:
    path: str  # relative, normalized, no trailing slash
    kind: Kind
    mode: int  # canonical
    size: int = 0
    target: str = ""  # a symbolic link's
    read: Callable[[], IO[bytes]] | None = None  # a file's contents


def _canonical_mode(kind: Kind, mode: int) -> int:
    if kind == "symlink":
        return 0o777
    return 0o755 if kind == "dir" or mode & EXEC_BITS else 0o644


class _Checker:
    """Checks entries one by one against the rules and the bounds, whatever their order in the archive."""

    def __init__(self, label: str, limits: PackageLimits, error: type[InvalidArgumentError | DataCorruptionError]):
        self.label, self.limits, self.error = label, limits, error
        self.paths: set[str] = set()
        self.links: set[str] = set()
        self.nondirs: set[str] = set()  # files and links
        self.dirs: set[str] = set()  # every parent of an entry
        self.bytes = 0

    def refuse(self, what: str, raw: str | None = None) -> Exception:
        where = f"{self.label}: entry {raw!r}" if raw is not None else self.label
        return self.error(f"{where}: {what}", hint="a package is a directory tree of regular files and links within it")

    def path(self, raw: str) -> str | None:
        """The normalized relative path of an entry (None: the package root itself, as ``./``)."""
        if raw.startswith("/"):
            raise self.refuse("absolute path", raw)
        parts = [p for p in raw.split("/") if p not in ("", ".")]
        if ".." in parts:
            raise self.refuse("'..' in the path", raw)
        if len(raw.encode("utf-8", "surrogateescape")) > self.limits.max_path_bytes:
            raise self.refuse(f"path longer than {self.limits.max_path_bytes} bytes (max_path_bytes)", raw)
        return "/".join(parts) or None

    def add(self, entry: _Entry, raw: str) -> _Entry:
        if entry.path in self.paths:
            raise self.refuse("appears twice", raw)
        parent = entry.path
        while "/" in parent:  # O(depth): no entry beneath a link or a file, whatever the order of entries
            parent = parent.rsplit("/", 1)[0]
            if parent in self.links:
                raise self.refuse(f"beneath the symbolic link {parent!r}", raw)
            if parent in self.nondirs:
                raise self.refuse(f"beneath {parent!r}, which is not a directory", raw)
            self.dirs.add(parent)
        if entry.kind != "dir":
            if entry.path in self.dirs:
                raise self.refuse("not a directory, but other entries are beneath it", raw)
            self.nondirs.add(entry.path)
        if entry.kind == "symlink":
            self._check_target(entry, raw)
            self.links.add(entry.path)
        self.paths.add(entry.path)
        if len(self.paths) > self.limits.max_files:
            raise self.refuse(f"more than {self.limits.max_files} entries (max_files)")
        self.bytes += entry.size
        if self.bytes > self.limits.max_unpacked_bytes:
            raise self.refuse(f"more than {self.limits.max_unpacked_bytes} bytes of files (max_unpacked_bytes)")
        return entry

    def _check_target(self, entry: _Entry, raw: str) -> None:
        target = entry.target
        if not target:
            raise self.refuse("symbolic link with an empty target", raw)
        if target.startswith("/"):
            raise self.refuse(f"symbolic link to an absolute path {target!r}", raw)
        parts = target.split("/")
        climbs = 0
        while climbs < len(parts) and parts[climbs] == "..":
            climbs += 1
        if ".." in parts[climbs:]:
            raise self.refuse(f"symbolic link {target!r}: '..' after the start of the target", raw)
        resolved = posixpath.normpath(posixpath.join(posixpath.dirname(entry.path), target))
        if resolved == ".." or resolved.startswith("../"):
            raise self.refuse(f"symbolic link {target!r} points outside the package", raw)


# -- reading what was uploaded ------------------------------------------------------------------------------------


def _dir_entries(root: Path, checker: _Checker) -> list[_Entry]:
    out: list[_Entry] = []
    pending = [root]
    while pending:
        directory = pending.pop()
        try:
            children = list(os.scandir(directory))
        except PermissionError:
            raise PermissionDeniedError(f"{checker.label}: cannot read directory {str(directory)!r}") from None
        for child in children:
            raw = os.path.relpath(child.path, root).replace(os.sep, "/")
            path = checker.path(raw)
            assert path is not None
            info = child.stat(follow_symlinks=False)
            if stat.S_ISDIR(info.st_mode):
                out.append(checker.add(_Entry(path, "dir", 0o755), raw))
                pending.append(Path(child.path))
            elif stat.S_ISREG(info.st_mode):
                entry = _Entry(
                    path, "file", _canonical_mode("file", info.st_mode), info.st_size, "", _opener(child.path)
                )
                out.append(checker.add(entry, raw))
            elif stat.S_ISLNK(info.st_mode):
                out.append(checker.add(_Entry(path, "symlink", 0o777, 0, os.readlink(child.path)), raw))
            else:
                raise checker.refuse(f"{_special(info.st_mode)} (only files, directories and links)", raw)
    return out


def _opener(path: str) -> Callable[[], IO[bytes]]:
    def read() -> IO[bytes]:
        return os.fdopen(os.open(path, os.O_RDONLY | os.O_NOFOLLOW), "rb")

    return read


def _special(mode: int) -> str:
    if stat.S_ISCHR(mode) or stat.S_ISBLK(mode):
        return "a device file"
    return "a FIFO" if stat.S_ISFIFO(mode) else "a socket" if stat.S_ISSOCK(mode) else "a special file"


def _tar_entry(tf: tarfile.TarFile, member: tarfile.TarInfo, checker: _Checker, *, hardlinks: bool) -> _Entry | None:
    raw = member.name
    path = checker.path(raw)
    if path is None:
        if not member.isdir():
            raise checker.refuse("a non-directory at the package root", raw)
        return None
    if member.isdir():
        entry = _Entry(path, "dir", 0o755)
    elif member.isreg():
        entry = _Entry(path, "file", _canonical_mode("file", member.mode), member.size, "", _member(tf, member))
    elif member.issym():
        entry = _Entry(path, "symlink", 0o777, 0, member.linkname)
    elif member.islnk() and hardlinks:
        checker.path(member.linkname)  # the target's own path must be acceptable
        try:
            target = tf.getmember(member.linkname)
        except KeyError:
            raise checker.refuse(f"hard link to {member.linkname!r}, which is not in the archive", raw) from None
        if not target.isreg():
            raise checker.refuse(f"hard link to {member.linkname!r}, which is not a file", raw)
        entry = _Entry(path, "file", _canonical_mode("file", target.mode), target.size, "", _member(tf, target))
    elif member.islnk():
        raise checker.refuse("a hard link (the canonical form has none)", raw)
    elif member.ischr() or member.isblk():
        raise checker.refuse("a device file (only files, directories and links)", raw)
    elif member.isfifo():
        raise checker.refuse("a FIFO (only files, directories and links)", raw)
    else:
        raise checker.refuse(f"an entry of unknown type {member.type!r}", raw)
    return checker.add(entry, raw)


def _member(tf: tarfile.TarFile, member: tarfile.TarInfo) -> Callable[[], IO[bytes]]:
    def read() -> IO[bytes]:
        f = tf.extractfile(member)
        assert f is not None
        return f

    return read


def _zip_entries(zf: zipfile.ZipFile, checker: _Checker) -> list[_Entry]:
    out: list[_Entry] = []
    for info in zf.infolist():
        raw = info.filename
        mode = info.external_attr >> 16
        path = checker.path(raw)
        if path is None:
            continue
        if info.is_dir():
            entry = _Entry(path, "dir", 0o755)
        elif stat.S_ISLNK(mode):
            if info.file_size > 4096:
                raise checker.refuse("a symbolic link with a target over 4096 bytes", raw)
            entry = _Entry(path, "symlink", 0o777, 0, zf.read(info).decode("utf-8", "surrogateescape"))
        elif stat.S_IFMT(mode) not in (0, stat.S_IFREG):
            raise checker.refuse(f"{_special(mode)} (only files, directories and links)", raw)
        else:
            entry = _Entry(path, "file", _canonical_mode("file", mode), info.file_size, "", _zip_member(zf, info))
        out.append(checker.add(entry, raw))
    return out


def _with_parents(entries: list[_Entry], checker: _Checker) -> list[_Entry]:
    """Every directory an entry is in, as an entry of its own (archives may leave them out): the same tree has
    the same canonical form whether its archive listed its directories or not."""
    missing = checker.dirs - checker.paths
    return entries + [checker.add(_Entry(d, "dir", 0o755), d) for d in sorted(missing)]


def _zip_member(zf: zipfile.ZipFile, info: zipfile.ZipInfo) -> Callable[[], IO[bytes]]:
    return lambda: zf.open(info)


@contextlib.contextmanager
def _source_entries(source: Path, limits: PackageLimits) -> Iterator[list[_Entry]]:
    label = f"package {str(source)!r}"
    checker = _Checker(label, limits, InvalidArgumentError)
    try:
        info = source.stat()
    except FileNotFoundError:
        raise NotFoundError(f"{label}: no such file or directory") from None
    if stat.S_ISDIR(info.st_mode):
        yield _dir_entries(source, checker)
        return
    if not stat.S_ISREG(info.st_mode):
        raise InvalidArgumentError(f"{label}: neither a directory nor an archive file")
    not_archive = InvalidArgumentError(
        f"{label}: not an archive", hint="upload a directory, a .tar, .tar.gz, .tgz, .tar.bz2, .tar.xz or .zip file"
    )
    try:
        if zipfile.is_zipfile(source):
            with zipfile.ZipFile(source) as zf:
                yield _with_parents(_zip_entries(zf, checker), checker)
            return
        try:
            tf = tarfile.open(source, "r:*")  # noqa: SIM115 (closed by the with below; open may fail first)
        except _ARCHIVE_ERRORS:
            raise not_archive from None
        with tf:
            found = [_tar_entry(tf, m, checker, hardlinks=True) for m in tf.getmembers()]
            yield _with_parents([e for e in found if e is not None], checker)
    except PermissionError:
        raise PermissionDeniedError(f"{label}: cannot read it") from None
    except _ARCHIVE_ERRORS as exc:
        raise InvalidArgumentError(f"{label}: a damaged archive: {exc}") from None


# -- writing the canonical form -----------------------------------------------------------------------------------


class _HashingWriter:
    def __init__(self, out: BinaryIO | gzip.GzipFile) -> None:
        self.out, self.hash = out, hashlib.sha256()

    def write(self, data: bytes) -> int:
        self.hash.update(data)
        return self.out.write(data)


class _CountingWriter:
    def __init__(self, out: BinaryIO) -> None:
        self.out, self.count = out, 0

    def write(self, data: bytes) -> int:
        self.count += len(data)
        return self.out.write(data)

    def flush(self) -> None:
        self.out.flush()


def _write_canonical(entries: Iterable[_Entry], out: BinaryIO) -> tuple[str, int]:
    counted = _CountingWriter(out)
    gz = gzip.GzipFile(filename="", mode="wb", fileobj=counted, compresslevel=6, mtime=0)
    hashing = _HashingWriter(gz)
    with tarfile.open(fileobj=hashing, mode="w|", format=tarfile.PAX_FORMAT) as tf:  # type: ignore[call-overload]
        for entry in entries:
            info = tarfile.TarInfo(entry.path)
            info.mtime, info.uid, info.gid, info.uname, info.gname, info.mode = 0, 0, 0, "", "", entry.mode
            if entry.kind == "dir":
                info.type = tarfile.DIRTYPE
                tf.addfile(info)
            elif entry.kind == "symlink":
                info.type, info.linkname = tarfile.SYMTYPE, entry.target
                tf.addfile(info)
            else:
                assert entry.read is not None
                info.size = entry.size
                with entry.read() as data:
                    tf.addfile(info, data)
    gz.close()
    return hashing.hash.hexdigest(), counted.count


def pack(source: Path, out: BinaryIO, limits: PackageLimits | None = None) -> PackInfo:
    """Write the canonical form of ``source`` (a directory or an archive file) to ``out``. Blocking: run it in a
    thread from asyncio. Raises InvalidArgumentError (what is wrong and where), NotFoundError, PermissionDeniedError."""
    limits = limits or PackageLimits()
    with _source_entries(source, limits) as entries:
        entries.sort(key=lambda e: e.path)
        try:
            digest, size = _write_canonical(entries, out)
        except OSError as exc:
            if "unexpected end of data" in str(exc):
                raise InvalidArgumentError(f"package {str(source)!r}: a file changed while it was packed") from None
            raise
        files = sum(e.size for e in entries)
        return PackInfo(digest, size, files, len(entries))


# -- unpacking a fetched blob -------------------------------------------------------------------------------------


class _HashingReader:
    def __init__(self, source: gzip.GzipFile) -> None:
        self.source, self.hash = source, hashlib.sha256()

    def read(self, n: int = -1) -> bytes:
        data = self.source.read(n)
        self.hash.update(data)
        return data


def unpack(
    blob: Path,
    dest: Path,
    digest: str,
    limits: PackageLimits | None = None,
    *,
    read_only: bool = True,
    durable: bool = False,
) -> int:
    """Unpack the canonical blob at ``blob`` into the new directory ``dest`` and check that its digest is
    ``digest``; returns the bytes of its files. With ``read_only`` files become 0444 (executables 0555) and
    directories 0555; with ``durable`` every file and directory is fsynced before it returns. Blocking. Raises
    DataCorruptionError (a wrong digest, a damaged or non-canonical blob, an entry breaking the rules); ``dest``
    is then left for the caller to remove."""
    limits = limits or PackageLimits()
    checker = _Checker(f"package blob {digest[:16]}", limits, DataCorruptionError)
    os.mkdir(dest, 0o700)
    try:
        with open(blob, "rb") as raw, gzip.GzipFile(fileobj=raw, mode="rb") as gz:
            reader = _HashingReader(gz)
            with tarfile.open(fileobj=reader, mode="r|") as tf:  # type: ignore[call-overload]
                for member in tf:
                    entry = _tar_entry(tf, member, checker, hardlinks=False)
                    if entry is not None:
                        _write_entry(dest, entry, durable)
            while reader.read(COPY_BYTES):  # the stream's end (padding), which the digest covers too
                pass
    except _ARCHIVE_ERRORS as exc:
        raise DataCorruptionError(f"{checker.label}: damaged: {exc}") from None
    if reader.hash.hexdigest() != digest:
        raise DataCorruptionError(
            f"{checker.label}: content digest {reader.hash.hexdigest()} is not the expected {digest}"
        )
    _finish(dest, read_only, durable)
    return checker.bytes


def _finish(dest: Path, read_only: bool, durable: bool) -> None:
    """Modes (read-only: files 0444 or 0555, directories 0555), then fsync, bottom up (links are left alone)."""
    for directory, _dirs, names in os.walk(dest, topdown=False):
        for name in names:
            path = os.path.join(directory, name)
            info = os.lstat(path)
            if read_only and stat.S_ISREG(info.st_mode):
                os.chmod(path, 0o555 if info.st_mode & EXEC_BITS else 0o444)
        os.chmod(directory, 0o555 if read_only else 0o755)
        if durable:
            fsync_dir(directory)


def _write_entry(dest: Path, entry: _Entry, durable: bool) -> None:
    target = dest / entry.path
    for parent in reversed(target.relative_to(dest).parents[:-1]):  # every level below dest, top down
        with contextlib.suppress(FileExistsError):
            os.mkdir(dest / parent, 0o755)
    if entry.kind == "dir":
        with contextlib.suppress(FileExistsError):
            os.mkdir(target, 0o755)
        if target.is_symlink() or not target.is_dir():
            raise DataCorruptionError(f"package entry {entry.path!r}: not a directory where one is expected")
        return
    if entry.kind == "symlink":
        os.symlink(entry.target, target)
        return
    assert entry.read is not None
    fd = os.open(target, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o644)
    with os.fdopen(fd, "wb") as out, entry.read() as data:
        left = entry.size
        while left:
            chunk = data.read(min(left, COPY_BYTES))
            if not chunk:
                raise DataCorruptionError(f"package entry {entry.path!r}: shorter than its header says")
            out.write(chunk)
            left -= len(chunk)
        if durable:
            out.flush()
            os.fsync(out.fileno())
    os.chmod(target, entry.mode)


def remove_tree(path: Path) -> None:
    """Remove a read-only tree: directories are made writable first (a non-root owner could not otherwise)."""
    if not path.exists():
        return
    for directory, _dirs, _files in os.walk(path):
        with contextlib.suppress(OSError):
            os.chmod(directory, 0o700)
    shutil.rmtree(path)
