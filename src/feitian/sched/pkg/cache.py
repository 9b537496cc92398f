"""The package cache of one machine (FUXI-6): Tubo asks it for a package before starting a process in it.

::

    cache = PackageCache(root, max_bytes, fetch)   # fetch(digest) -> async iterator of the blob's bytes
    await cache.open()                              # takes the directory (one process per root), recovers it
    async with cache.use(ref) as path: ...          # ensure + pin: path stays until the block ends
    path = await cache.ensure(ref, pin=True)        # ... or pin by hand for a process outliving the call,
    cache.unpin(ref.digest)                         # and unpin when it exits
    await cache.close()

**Layout.** ``root/<digest>/`` holds one unpacked package, read-only (files 0444, executables 0555, directories
0555); ``root/<digest>.ready`` (JSON: digest, bytes) says it is complete and, by its mtime, when it was last
used; ``root/tmp/`` holds downloads and unpackings in progress and packages being removed; ``root/.lock`` is
held (``flock``) by the process that owns the cache.

**Once per machine.** Concurrent :meth:`ensure` calls for one digest share one download and one unpacking. A
download is bounded by the blob size recorded for the version; the content's sha256 is checked against the
digest as the blob is unpacked into ``tmp/``, and only a verified, fsynced tree is renamed to ``root/<digest>``
and marked ready. A mismatch raises DataCorruptionError and leaves nothing behind.

**Bounded.** ``max_bytes`` bounds the bytes of the files of the unpacked packages (file contents, not the file
system's blocks). Room for a new package is made by removing the least recently used packages that are not
pinned; a package pinned by a running process is never removed. A package larger than ``max_bytes`` is refused
(InvalidArgumentError); when the pinned packages leave too little room, OverloadedError (retryable: it succeeds
once processes end).

**Restarts.** :meth:`open` removes ``tmp/``, every package directory without its ``.ready`` marker (a crash
mid-unpack or mid-removal) and every marker without its directory, and rebuilds the recency order from the
markers' mtimes. Pins are not persisted: after a restart, Tubo pins again the packages of the processes it
re-adopts.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import fcntl
import logging
import os
from collections import OrderedDict
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import IO

import msgspec

from feitian.errors import (
    ConflictError,
    DataCorruptionError,
    InvalidArgumentError,
    NotFoundError,
    OverloadedError,
)
from feitian.runtime.files import atomic_write, fsync_dir
from feitian.sched.pkg.archive import PackageLimits, remove_tree, unpack
from feitian.sched.pkg.ref import PackageRef, validate_digest

__all__ = ["CachedPackage", "Fetch", "PackageCache"]

log = logging.getLogger(__name__)

Fetch = Callable[[str], AsyncIterator[bytes]]  # the blob of a digest, as a stream of pieces
READY = ".ready"
TMP = "tmp"


class _Marker(msgspec.Struct, frozen=True):
    digest: str
    unpacked_bytes: int


@dataclass
class CachedPackage:
    digest: str
    path: Path
    unpacked_bytes: int
    pins: int = 0


class PackageCache:
    def __init__(self, root: Path, max_bytes: int, fetch: Fetch, *, limits: PackageLimits | None = None) -> None:
        if max_bytes <= 0:
            raise InvalidArgumentError(f"package cache {root}: max_bytes must be positive, not {max_bytes}")
        self.root = Path(root)
        self.max_bytes = max_bytes
        self.fetch = fetch
        self.limits = limits or PackageLimits()
        self._entries: OrderedDict[str, CachedPackage] = OrderedDict()  # least recently used first
        self._loading: dict[str, asyncio.Task[None]] = {}
        self._waiting: dict[str, int] = {}  # callers awaiting a load: its package is not evicted before they wake
        self._reserved = 0  # bytes of loads in progress
        self._serial = 0
        self._lock_file: IO[bytes] | None = None

    # -- lifecycle ---------------------------------------------------------------------------------------------

    async def open(self) -> None:
        await asyncio.to_thread(self._open)

    def _open(self) -> None:
        self.root.mkdir(parents=True, exist_ok=True)
        lock = open(self.root / ".lock", "ab")  # noqa: SIM115 (held until close)
        try:
            fcntl.flock(lock.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            lock.close()
            raise ConflictError(f"package cache {self.root}: used by another process") from None
        self._lock_file = lock
        remove_tree(self.root / TMP)
        (self.root / TMP).mkdir()
        found: list[tuple[float, CachedPackage]] = []
        for child in self.root.iterdir():
            name = child.name
            if name.endswith(READY) and not (self.root / name[: -len(READY)]).is_dir():
                child.unlink()
            elif _is_digest(name) and child.is_dir():
                marker = self._read_marker(name)
                if marker is None:
                    log.info("package cache %s: removing %s, unpacked only in part", self.root, name)
                    remove_tree(child)
                else:
                    mtime = (self.root / (name + READY)).stat().st_mtime
                    found.append((mtime, CachedPackage(name, child, marker.unpacked_bytes)))
        for _, entry in sorted(found, key=lambda f: f[0]):
            self._entries[entry.digest] = entry
        fsync_dir(self.root)

    def _read_marker(self, digest: str) -> _Marker | None:
        try:
            marker = msgspec.json.decode((self.root / (digest + READY)).read_bytes(), type=_Marker)
        except (OSError, msgspec.MsgspecError):
            return None
        return marker if marker.digest == digest else None

    async def close(self) -> None:
        """Cancel the loads in progress, wait until they have cleaned up, and release the directory."""
        tasks = list(self._loading.values())
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        if self._lock_file is not None:
            self._lock_file.close()
            self._lock_file = None

    # -- what is there -----------------------------------------------------------------------------------------

    @property
    def used_bytes(self) -> int:
        return sum(e.unpacked_bytes for e in self._entries.values())

    def packages(self) -> list[CachedPackage]:
        """Unpacked packages, least recently used first."""
        return list(self._entries.values())

    def pin(self, digest: str) -> Path:
        """Keep the package ``digest`` until as many :meth:`unpin` calls (NotFoundError if not cached)."""
        entry = self._entries.get(digest)
        if entry is None:
            raise NotFoundError(f"package cache: {digest} is not cached", hint="ensure() it first")
        entry.pins += 1
        return entry.path

    def unpin(self, digest: str) -> None:
        entry = self._entries.get(digest)
        if entry is None or entry.pins == 0:
            raise InvalidArgumentError(f"package cache: unpin {digest}: not pinned")
        entry.pins -= 1

    @contextlib.asynccontextmanager
    async def use(self, ref: PackageRef) -> AsyncIterator[Path]:
        """The package's directory, pinned for the block."""
        path = await self.ensure(ref, pin=True)
        try:
            yield path
        finally:
            self.unpin(ref.digest)

    # -- ensure ------------------------------------------------------------------------------------------------

    async def ensure(self, ref: PackageRef, *, pin: bool = False) -> Path:
        """The directory holding ``ref``'s files, downloading and unpacking it if needed (once, however many
        ask at the same time). ``pin``: pinned before it is returned (no eviction can come in between)."""
        if self._lock_file is None:
            raise InvalidArgumentError(f"package cache {self.root}: not open (call open() first)")
        digest = validate_digest(ref.digest)
        if digest not in self._entries:
            task = self._loading.get(digest)
            if task is None:
                task = asyncio.create_task(self._load(ref), name=f"pkg-load-{digest[:12]}")
                self._loading[digest] = task
                task.add_done_callback(lambda _t: self._loading.pop(digest, None))
            self._waiting[digest] = self._waiting.get(digest, 0) + 1
            try:
                await asyncio.shield(task)
            finally:
                self._waiting[digest] -= 1
                if not self._waiting[digest]:
                    del self._waiting[digest]
        entry = self._entries[digest]
        self._entries.move_to_end(digest)
        with contextlib.suppress(OSError):
            os.utime(self.root / (digest + READY))  # the recency order a restart rebuilds
        if pin:
            entry.pins += 1
        return entry.path

    async def _load(self, ref: PackageRef) -> None:
        need = ref.unpacked_bytes
        if need > self.max_bytes:
            raise InvalidArgumentError(
                f"package {ref.spec}: {need} bytes unpacked, more than the package cache's max_bytes {self.max_bytes}"
            )
        self._reserved += need  # first: loads of other packages at the same time count it while making room
        self._serial += 1
        blob = self.root / TMP / f"{ref.digest}.{self._serial}.blob"
        staging = self.root / TMP / f"{ref.digest}.{self._serial}.dir"
        try:
            await self._make_room(ref)
            await self._download(ref, blob)
            # a blob holding more than its record says is refused, so the cache never outgrows max_bytes
            limits = dataclasses.replace(self.limits, max_unpacked_bytes=min(need, self.limits.max_unpacked_bytes))
            got = await asyncio.to_thread(unpack, blob, staging, ref.digest, limits, durable=True)
            final = self.root / ref.digest
            os.chmod(staging, 0o700)  # moving a directory to another parent updates its '..': needs write access
            os.rename(staging, final)
            os.chmod(final, 0o555)
            fsync_dir(self.root)
            atomic_write(self.root / (ref.digest + READY), msgspec.json.encode(_Marker(ref.digest, got)))
            self._entries[ref.digest] = CachedPackage(ref.digest, final, got)
        finally:
            self._reserved -= need
            await asyncio.to_thread(_remove_paths, [blob, staging])

    async def _download(self, ref: PackageRef, blob: Path) -> None:
        received = 0
        with open(blob, "wb") as out:  # noqa: ASYNC230 (opening is quick; the writes go to a thread)
            async for piece in self.fetch(ref.digest):
                received += len(piece)
                if received > ref.size:
                    raise DataCorruptionError(
                        f"package {ref.spec}: blob {ref.digest[:16]} longer than its recorded {ref.size} bytes"
                    )
                await asyncio.to_thread(out.write, piece)
        if received != ref.size:
            raise DataCorruptionError(
                f"package {ref.spec}: blob {ref.digest[:16]} has {received} bytes, not its recorded {ref.size}"
            )

    async def _make_room(self, ref: PackageRef) -> None:
        """Remove least recently used packages, never a pinned one or one being handed to its callers, until the
        packages and the loads in progress (this one included) fit."""
        need = ref.unpacked_bytes
        while self.used_bytes + self._reserved > self.max_bytes:
            victim = next(
                (e for e in self._entries.values() if e.pins == 0 and e.digest not in self._waiting),
                None,
            )
            if victim is None:
                pinned = sum(e.unpacked_bytes for e in self._entries.values() if e.pins or e.digest in self._waiting)
                raise OverloadedError(
                    f"package cache {self.root}: no room for {ref.spec} ({need} bytes): {pinned} bytes are pinned "
                    f"by running processes, {self._reserved - need} being loaded, max_bytes {self.max_bytes}",
                    hint="retry when processes have ended, or give the cache more room",
                )
            await self._evict(victim)

    async def _evict(self, entry: CachedPackage) -> None:
        del self._entries[entry.digest]
        self._serial += 1
        doomed = self.root / TMP / f"{entry.digest}.{self._serial}.evicted"
        (self.root / (entry.digest + READY)).unlink(missing_ok=True)  # first: a crash leaves an unmarked directory
        os.chmod(entry.path, 0o700)
        os.rename(entry.path, doomed)
        fsync_dir(self.root)
        log.info("package cache %s: evicted %s (%d bytes)", self.root, entry.digest, entry.unpacked_bytes)
        await asyncio.to_thread(remove_tree, doomed)


def _is_digest(name: str) -> bool:
    return len(name) == 64 and all(c in "0123456789abcdef" for c in name)


def _remove_paths(paths: list[Path]) -> None:
    for path in paths:
        if path.is_dir() and not path.is_symlink():
            remove_tree(path)
        else:
            path.unlink(missing_ok=True)
