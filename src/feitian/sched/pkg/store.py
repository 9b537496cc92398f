"""The package store (FUXI-6): blobs in Pangu, named by their digest; versions and references in Nuwa.

Layout (``root`` = ``/feitian/packages`` by default, the same path in both)::

    Pangu  ROOT/blobs/<digest>              the canonical blob (archive.py); written once per digest
           ROOT/uploads/<digest>.<nonce>    a blob being written, renamed into blobs/ when complete
    Nuwa   ROOT/names/<name>/<version>      the version's PackageRef (JSON)
           ROOT/refs/<digest>/<name>@<ver>  one entry per version that uses the blob
           ROOT/last/<name>                 the highest version number the name ever had
           ROOT/gc/<digest>                 ephemeral: the blob is being deleted

**Sharing a blob.** An upload whose digest is already in ``blobs/`` writes nothing to Pangu: the new version
refers to the same blob. Versions are integers counted per name unless one is given; a number is never given
twice, even after its version was removed (``last/<name>`` outlives the versions).

**Deleting safely.** ``remove`` deletes a version's record and its reference in one transaction, then collects
the blob: a transaction deletes ``refs/<digest>/`` — which Nuwa refuses while any reference is in it — and
creates the ``gc/<digest>`` marker; then the blob is deleted and the marker after it. An upload, for its part,
(1) makes sure ``refs/<digest>/`` exists, creating it only while no ``gc/<digest>`` marker exists, and notes its
create revision R; (2) makes sure the blob is in Pangu; (3) commits its record and reference in a transaction
that checks ``refs/<digest>/`` still has create revision R. A collection that ran between (1) and (3) deleted
that directory, so (3) fails and the upload starts again at (1) — after the collection, so (2) writes the blob
again. Hence a committed version always has its blob.

The window that remains: the marker is ephemeral, so that a remover that dies midway does not block uploads of
that digest for ever (its blob is left behind, unreferenced, and :meth:`PackageStore.collect_garbage` removes
it). If a remover is paused — not dead — for longer than its Nuwa session's TTL between its transaction and
its Pangu delete, its marker expires, an upload may then find the old blob and commit, and the paused remover
deletes that blob when it resumes. The cache detects the missing blob (NotFoundError on fetch); uploading the
same content again repairs it.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import secrets
import tempfile
from collections.abc import AsyncIterator
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any

import msgspec

from feitian.base.clock import Clock, MonotonicClock
from feitian.coord import CheckOp, CoordClient, Created, CreateOp, DeleteOp, SetOp
from feitian.errors import (
    AlreadyExistsError,
    ConflictError,
    DataCorruptionError,
    FeitianError,
    InvalidArgumentError,
    NotFoundError,
)
from feitian.sched.pkg.archive import PackageLimits, PackInfo, pack, remove_tree, unpack
from feitian.sched.pkg.ref import PackageRef, parse_spec, validate_digest, validate_name, validate_version

if TYPE_CHECKING:
    from feitian.dfs import DfsClient

__all__ = ["DEFAULT_ROOT", "PackageStore"]

log = logging.getLogger(__name__)

DEFAULT_ROOT = "/feitian/packages"
PIECE_BYTES = 4 << 20  # read from / written to Pangu in pieces of this size
MAX_ATTEMPTS = 8  # an upload racing collections or other uploads of the name starts again at most this often
GC_WAIT_S = 30.0  # an upload waits at most this long for a collection of its digest to end
GC_POLL_S = 0.1
LIST_PAGE = 1000
UPLOAD_ABANDONED_S = 3600.0  # collect_garbage deletes uploads in progress older than this


class PackageStore:
    def __init__(
        self,
        coord: CoordClient,
        dfs: DfsClient | None,
        *,
        root: str = DEFAULT_ROOT,
        limits: PackageLimits | None = None,
        clock: Clock | None = None,
    ) -> None:
        self.coord, self._dfs = coord, dfs  # dfs None: records only (resolve, list), no blobs
        self.clock = clock or MonotonicClock()
        self.root = root.rstrip("/")
        self.limits = limits or PackageLimits()

    @property
    def dfs(self) -> DfsClient:
        """The Pangu client (InvalidArgumentError for a store that reads records only)."""
        if self._dfs is None:
            raise InvalidArgumentError("this package store reads records only: it was given no Pangu client")
        return self._dfs

    # -- paths -------------------------------------------------------------------------------------------------

    def _blob(self, digest: str) -> str:
        return f"{self.root}/blobs/{digest}"

    def _name_dir(self, name: str) -> str:
        return f"{self.root}/names/{name}/"

    def _version(self, name: str, version: int) -> str:
        return f"{self.root}/names/{name}/{version}"

    def _refs(self, digest: str) -> str:
        return f"{self.root}/refs/{digest}/"

    def _counter(self, name: str) -> str:
        return f"{self.root}/last/{name}"

    def _tomb(self, digest: str) -> str:
        return f"{self.root}/gc/{digest}"

    # -- upload ------------------------------------------------------------------------------------------------

    async def upload(self, name: str, source: Path, *, version: int | None = None) -> PackageRef:
        """Pack ``source`` (a directory or an archive file) and store it as ``name``'s next version (or as
        ``version``: AlreadyExistsError if taken). The blob is written only if no version has that content."""
        validate_name(name)
        with tempfile.TemporaryFile(prefix="feitian-pkg-") as spool:
            info = await asyncio.to_thread(pack, Path(source), spool, self.limits)
            return await self.upload_packed(name, spool, info, version=version)

    async def upload_packed(
        self, name: str, spool: IO[bytes], info: PackInfo, *, version: int | None = None
    ) -> PackageRef:
        """:meth:`upload` of a blob :func:`~feitian.sched.pkg.archive.pack` wrote to ``spool`` (a seekable file)."""
        validate_name(name)
        if version is not None:
            validate_version(version)
        for _attempt in range(MAX_ATTEMPTS):
            revision = await self._refs_dir(info.digest)
            await self._ensure_blob(info.digest, info.size, spool)
            last, counter = await self._last_version(name)
            number = version if version is not None else last + 1
            ref = PackageRef(
                name=name,
                version=number,
                digest=info.digest,
                size=info.size,
                unpacked_bytes=info.unpacked_bytes,
                files=info.files,
                created_s=self.clock.wall_ns() / 1e9,
            )
            high = str(max(last, number)).encode()
            try:
                await self.coord.txn(
                    [
                        CheckOp(path=self._refs(info.digest), create_revision=revision),
                        CreateOp(path=self._version(name, number), value=msgspec.json.encode(ref), parents=True),
                        CreateOp(path=self._refs(info.digest) + f"{name}@{number}"),
                        CreateOp(path=self._counter(name), value=high, parents=True)
                        if counter is None
                        else SetOp(path=self._counter(name), value=high, expected_version=counter),
                    ]
                )
                return ref
            except ConflictError:
                continue  # the blob was collected, or another upload of the name committed, meanwhile: again
            except AlreadyExistsError as exc:
                if version is not None and exc.fields.get("op_index") == 1:
                    raise AlreadyExistsError(
                        f"package {name}@{version} already exists",
                        hint="leave out --version to get the next number",
                    ) from None
                continue  # another upload of the name committed meanwhile: again
        raise ConflictError(f"upload {name}: gave up after {MAX_ATTEMPTS} attempts racing other changes")

    async def _refs_dir(self, digest: str) -> int:
        """Step (1): ``refs/<digest>/`` exists, created while no collection of it runs; its create revision."""
        deadline_ns = self.clock.monotonic_ns() + int(GC_WAIT_S * 1e9)
        while True:
            found = await self.coord.exists(self._refs(digest))
            if found.stat is not None:
                return found.stat.create_revision
            try:
                done = await self.coord.txn(
                    [CheckOp(path=self._tomb(digest), exists=False), CreateOp(path=self._refs(digest), parents=True)]
                )
                created = done.results[1]
                assert isinstance(created, Created)
                return created.stat.create_revision
            except AlreadyExistsError:
                continue
            except ConflictError:
                if self.clock.monotonic_ns() > deadline_ns:
                    raise ConflictError(
                        f"package blob {digest}: still being deleted after {GC_WAIT_S:g}s", hint="try again"
                    ) from None
                await self.clock.sleep(GC_POLL_S)

    async def _ensure_blob(self, digest: str, size: int, spool: IO[bytes]) -> bool:
        """Step (2): the blob is in Pangu (True if this call wrote it)."""
        path = self._blob(digest)
        try:
            status = await self.dfs.stat(path)
            if status.length == size:
                return False
            log.warning("package blob %s: %d bytes in Pangu, %d expected: writing it again", path, status.length, size)
            await self.dfs.delete(path)
        except NotFoundError:
            pass
        upload = f"{self.root}/uploads/{digest}.{secrets.token_hex(8)}"
        writer = await self.dfs.create(upload, parents=True)
        try:
            spool.seek(0)
            while piece := await asyncio.to_thread(spool.read, PIECE_BYTES):
                await writer.write(piece)
            await writer.close()
        except BaseException:
            await writer.abort(remove=True)
            raise
        try:
            await self.dfs.mkdir(f"{self.root}/blobs")
            await self.dfs.rename(upload, path)
        except AlreadyExistsError:  # another upload of the same content won: the same bytes are there
            await _quietly(self.dfs.delete(upload))
            return False
        except BaseException:
            await _quietly(self.dfs.delete(upload))
            raise
        return True

    async def _last_version(self, name: str) -> tuple[int, int | None]:
        """The highest version number ``name`` ever had (0: none) and its counter node's version (None: none)."""
        try:
            found = await self.coord.get(self._counter(name))
        except NotFoundError:
            return 0, None
        text = found.value.decode("ascii", "replace")
        if not text.isdigit():
            raise DataCorruptionError(f"package {name}: its version counter in Nuwa is unreadable ({text!r})")
        return int(text), found.stat.version

    async def _list(self, directory: str, *, values: bool) -> list[tuple[str, bytes]]:
        """Every entry of a Nuwa directory (paged), as (name, value); [] if it does not exist."""
        out: list[tuple[str, bytes]] = []
        after = ""
        while True:
            try:
                page = await self.coord.list(directory, values=values, start_after=after, limit=LIST_PAGE)
            except NotFoundError:
                return out
            out.extend(zip(page.names, page.values or [b""] * len(page.children), strict=True))
            if not page.more:
                return out
            after = page.children[-1].path

    # -- reading -----------------------------------------------------------------------------------------------

    async def versions(self, name: str) -> list[PackageRef]:
        """Every version of ``name``, oldest first ([] if none)."""
        validate_name(name)
        refs = [_decode(value, name) for entry, value in await self._list(self._name_dir(name), values=True)]
        return sorted((r for r in refs if r is not None), key=lambda r: r.version)

    async def resolve(self, spec: str) -> PackageRef:
        """``NAME`` (its latest version) or ``NAME@VERSION``; NotFoundError naming what is missing."""
        name, version = parse_spec(spec)
        if version is None:
            refs = await self.versions(name)
            if not refs:
                raise NotFoundError(f"package {name}: not found", hint="`feitian pkg ls` lists the packages")
            return refs[-1]
        try:
            found = await self.coord.get(self._version(name, version))
        except NotFoundError:
            raise NotFoundError(
                f"package {spec}: no such version", hint=f"`feitian pkg ls {name}` lists its versions"
            ) from None
        ref = _decode(found.value, spec)
        if ref is None:
            raise DataCorruptionError(f"package {spec}: its record in Nuwa is unreadable")
        return ref

    async def open_blob(self, digest: str) -> AsyncIterator[bytes]:
        """The blob of ``digest`` from Pangu, in pieces (the Fetch of :class:`PackageCache`)."""
        path = self._blob(validate_digest(digest))
        try:
            status = await self.dfs.stat(path)
        except NotFoundError:
            raise NotFoundError(
                f"package blob {digest}: missing from Pangu ({path})", hint="upload the package again to restore it"
            ) from None
        reader = await self.dfs.open_read(path)
        for offset in range(0, status.length, PIECE_BYTES):
            yield await reader.read(offset, min(PIECE_BYTES, status.length - offset))

    async def fetch_to(self, spec: str, dest: Path) -> PackageRef:
        """Unpack ``spec`` into the new directory ``dest`` (writable copies; the digest is verified)."""
        dest = Path(dest)
        if dest.exists() or dest.is_symlink():
            raise AlreadyExistsError(f"get {spec}: {dest} already exists", hint="name a directory that does not exist")
        if not dest.parent.is_dir():
            raise NotFoundError(f"get {spec}: {dest.parent} is not a directory")
        ref = await self.resolve(spec)
        with tempfile.NamedTemporaryFile(prefix=".feitian-pkg-", dir=dest.parent) as spool:
            async for piece in self.open_blob(ref.digest):
                await asyncio.to_thread(spool.write, piece)
            spool.flush()
            try:
                await asyncio.to_thread(unpack, Path(spool.name), dest, ref.digest, self.limits, read_only=False)
            except BaseException:
                await asyncio.to_thread(remove_tree, dest)
                raise
        return ref

    # -- removal -----------------------------------------------------------------------------------------------

    async def remove(self, spec: str) -> list[PackageRef]:
        """Remove ``NAME@VERSION``, or every version of ``NAME``; then each blob no version refers to any more.
        Returns what was removed (NotFoundError if nothing matched)."""
        name, version = parse_spec(spec)
        refs = [await self.resolve(spec)] if version is not None else await self.versions(name)
        if not refs:
            raise NotFoundError(f"package {name}: not found", hint="`feitian pkg ls` lists the packages")
        removed = []
        for ref in refs:
            try:
                await self.coord.txn(
                    [
                        DeleteOp(path=self._version(ref.name, ref.version)),
                        DeleteOp(path=self._refs(ref.digest) + ref.spec),
                    ]
                )
            except NotFoundError:
                continue  # removed by someone else meanwhile
            removed.append(ref)
            await self._collect(ref.digest)
        if version is None:
            await _quietly(self.coord.delete(self._name_dir(name)))  # unless a version appeared meanwhile
        if not removed:
            raise NotFoundError(f"package {spec}: not found (removed meanwhile)")
        return removed

    async def _collect(self, digest: str) -> bool:
        """Delete the blob if no version refers to it (True if deleted)."""
        try:
            await self.coord.txn(
                [DeleteOp(path=self._refs(digest)), CreateOp(path=self._tomb(digest), ephemeral=True, parents=True)]
            )
        except (ConflictError, NotFoundError, AlreadyExistsError):
            return False  # still referenced, or collected by someone else
        return await self._delete_blob(digest)

    async def _delete_blob(self, digest: str) -> bool:
        try:
            await self.dfs.delete(self._blob(digest))
            log.info("package blob %s deleted: no version refers to it", digest)
            return True
        except NotFoundError:
            return False
        finally:
            await _quietly(self.coord.delete(self._tomb(digest)))

    async def collect_garbage(self) -> list[str]:
        """Delete the blobs no version refers to (left behind by a remover that died midway, or by an upload
        that failed after storing its blob), empty reference directories, and uploads in progress older than
        UPLOAD_ABANDONED_S; returns the digests whose blobs were deleted."""
        deleted = []
        for entry, _ in await self._list(f"{self.root}/refs/", values=False):
            digest = entry.rstrip("/")
            if await self._collect(digest):  # refused (nothing done) while a version refers to it
                deleted.append(digest)
        try:
            blobs = await self.dfs.list(f"{self.root}/blobs")
        except NotFoundError:
            blobs = []
        for blob in blobs:
            digest = blob.name
            try:
                await self.coord.txn(
                    [
                        CheckOp(path=self._refs(digest), exists=False),
                        CreateOp(path=self._tomb(digest), ephemeral=True, parents=True),
                    ]
                )
            except (ConflictError, AlreadyExistsError, InvalidArgumentError):
                continue
            if await self._delete_blob(digest):
                deleted.append(digest)
        try:
            uploads = await self.dfs.list(f"{self.root}/uploads")
        except NotFoundError:
            uploads = []
        for upload in uploads:
            path = f"{self.root}/uploads/{upload.name}"
            try:
                if (await self.dfs.stat(path)).mtime_ns < self.clock.wall_ns() - UPLOAD_ABANDONED_S * 1e9:
                    await self.dfs.delete(path)
            except FeitianError:
                continue
        return deleted

    # `list` last: defined earlier, it would shadow the builtin in the annotations after it

    async def list(self, name: str | None = None) -> list[PackageRef]:
        """Every version of every package (or of ``name``: NotFoundError if it has none), by name and version."""
        if name is not None:
            refs = await self.versions(name)
            if not refs:
                raise NotFoundError(f"package {name}: not found", hint="`feitian pkg ls` lists the packages")
            return refs
        out: list[PackageRef] = []
        for entry, _ in await self._list(f"{self.root}/names/", values=False):
            out.extend(await self.versions(entry.rstrip("/")))
        return out


def _decode(value: bytes, what: str) -> PackageRef | None:
    try:
        return msgspec.json.decode(value, type=PackageRef)
    except msgspec.MsgspecError:
        log.warning("package %s: unreadable record in Nuwa, skipped", what)
        return None


async def _quietly(call: Any) -> None:
    with contextlib.suppress(FeitianError):
        await call
