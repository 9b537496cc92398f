"""The Pangu client (PANGU-7, PANGU-8): asyncio-native; synchronous file objects in :mod:`feitian.dfs.client.sync`.

::

    dfs = DfsClient(rpc_client, master_addresses)
    await dfs.mkdir("/logs")
    async with await dfs.create("/data/a.bin") as f:     # a write lease: one writer per file
        await f.write(b"...")                            # buffered; sent in pieces down the replica pipeline
        await f.flush()                                  # returns when every replica has it durably
    data = await dfs.read("/data/a.bin", offset=0, length=100)

Metadata goes to the master leader through the replicated-service kit's router (redirects followed, retries by
its rules, never past the deadline of a Kuafu call being handled when used inside a handler). The namespace writes
(mkdir, rename, delete, set replication, create, open for writing, close) carry this client's ``client_id`` and a
``request_seq``, so a retry after a lost reply or a leader change is applied once (at most ``DEDUPE_WINDOW``
such writes in flight per client). Bytes go straight between the client and the chunk servers, authorized by
chunk tokens the master hands out with each chunk. Importing this module registers the ``pangu://`` fsspec
filesystem (:mod:`feitian.dfs.client.fsspec_adapter`).
"""

from __future__ import annotations

import asyncio
import os
import secrets
import socket
from collections.abc import AsyncIterator
from typing import Any

import fsspec  # type: ignore[import-untyped]
import msgspec

from feitian.base.clock import Clock, MonotonicClock
from feitian.base.units import MiB
from feitian.dfs.core import (
    DeleteResult,
    DirEntry,
    FileStatus,
    FileType,
    LeaseMode,
    MkdirResult,
    RenameResult,
)
from feitian.dfs.core.namespace import DEDUPE_WINDOW
from feitian.dfs.messages.master import (
    AuthorizeCreate,
    Balance,
    BalanceReply,
    CreateRequest,
    Decommission,
    DeleteRequest,
    DiskUsage,
    DiskUsageReply,
    Exists,
    Fsck,
    FsckReply,
    ListRequest,
    MasterStatus,
    MasterStatusReply,
    MkdirRequest,
    OpenReply,
    OpenWrite,
    Placement,
    PlacementReply,
    RenameRequest,
    Servers,
    ServerStatus,
    SetReplicationRequest,
    Stat,
)
from feitian.dfs.options import master_caller
from feitian.dfs.presenter import TokenPresenter
from feitian.errors import (
    AlreadyExistsError,
    ConflictError,
    ConnectionLostError,
    FeitianError,
    InvalidArgumentError,
    UnavailableError,
)
from feitian.rpc import Client

__all__ = ["DfsClient", "DfsClientConfig"]

LIST_PAGE = 1000


class DfsClientConfig(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    piece_bytes: int = 4 * MiB  # bytes per write/read call to a chunk server (rounded to whole blocks)
    write_window: int = 4  # pieces of one file in flight down its pipeline
    read_window: int = 4  # pieces read in parallel
    timeout_s: float = 30.0  # a master call, redirects and retries included
    io_timeout_s: float = 60.0  # one call to a chunk server
    rack: str = ""  # this client's rack: reads prefer replicas on it
    local_server: str = ""  # a chunk server on this machine: reads prefer it
    lease_renew_s: float = 15.0  # renew a write lease this often (the master grants lease_ttl_s, 60 s)

    def problems(self) -> list[str]:
        out = []
        if self.piece_bytes < 4096 or self.write_window < 1 or self.read_window < 1:
            out.append("piece_bytes >= 4096, write_window >= 1 and read_window >= 1 are required")
        if self.timeout_s <= 0 or self.io_timeout_s <= 0 or self.lease_renew_s <= 0:
            out.append("timeouts and lease_renew_s must be > 0")
        return out


def default_holder() -> str:
    return f"{socket.gethostname()}:{os.getpid()}:{secrets.token_hex(4)}"


class DfsClient:
    """See the module docstring. ``client`` is a Kuafu client (with TLS and credentials in a secured cluster)."""

    def __init__(
        self,
        client: Client,
        masters: list[str],
        config: DfsClientConfig | None = None,
        *,
        holder: str | None = None,
        clock: Clock | None = None,
    ) -> None:
        self.config = config or DfsClientConfig()
        self.clock = clock or MonotonicClock()  # waits, polls and the write lease's renewals
        problems = self.config.problems()
        if problems:
            raise InvalidArgumentError("dfs client config: " + "; ".join(problems))
        self.rpc = client
        self.masters = master_caller(client, masters, timeout_s=self.config.timeout_s, clock=self.clock)
        self.presenter = TokenPresenter(client)
        self.holder = holder or default_holder()
        self.client_id = secrets.token_hex(8)  # this client's writes, to the master's dedupe table
        self._seq = 0
        # At most DEDUPE_WINDOW writes in flight: the master's table remembers this many per client. A counter and
        # an event rather than asyncio.Semaphore: the bound is almost never reached, and this is on every write.
        self._writes_in_flight = 0
        self._write_slot_freed = asyncio.Event()

    async def master(
        self,
        request: Any,
        *,
        slow: bool = False,
        timeout_s: float | None = None,
        attempt_timeout_s: float | None = None,
    ) -> Any:
        """Call the master leader. ``slow``: the call may take long on the master (pipeline recovery probes
        replicas and may copy a chunk), so one attempt gets most of the budget. A write that carries a
        ``request_seq`` gets the next one: retried on a new leader, it is applied once."""
        attempt = self.config.timeout_s if slow else attempt_timeout_s
        if "request_seq" not in type(request).__struct_fields__:
            return await self.masters.call(request, timeout_s=timeout_s, attempt_timeout_s=attempt)
        while self._writes_in_flight >= DEDUPE_WINDOW:
            self._write_slot_freed.clear()
            await self._write_slot_freed.wait()
        self._writes_in_flight += 1
        try:
            self._seq += 1
            request = msgspec.structs.replace(request, client_id=self.client_id, request_seq=self._seq)
            return await self.masters.call(request, timeout_s=timeout_s, attempt_timeout_s=attempt)
        finally:
            self._writes_in_flight -= 1
            self._write_slot_freed.set()

    # -- namespace -----------------------------------------------------------------------------------------------

    async def mkdir(self, path: str, *, parents: bool = True) -> MkdirResult:
        result: MkdirResult = await self.master(MkdirRequest(path, parents))
        return result

    async def stat(self, path: str) -> FileStatus:
        status: FileStatus = await self.master(Stat(path))
        return status

    async def exists(self, path: str) -> bool:
        found: bool = await self.master(Exists(path))
        return found

    async def list(self, path: str) -> list[DirEntry]:
        """Every entry of a directory, in name order (paged through the master)."""
        out: list[DirEntry] = []
        after = ""
        while True:
            page: tuple[DirEntry, ...] = await self.master(ListRequest(path, after, LIST_PAGE))
            out.extend(page)
            if len(page) < LIST_PAGE:
                return out
            after = page[-1].name

    async def rename(self, src: str, dst: str, *, overwrite: bool = False) -> RenameResult:
        """Atomic: the destination appears with the source's contents as the source disappears."""
        nonce: bytes = await self.master(AuthorizeCreate(dst))
        result: RenameResult = await self.master(RenameRequest(src, dst, overwrite, nonce))
        return result

    async def delete(self, path: str, *, recursive: bool = False) -> DeleteResult:
        result: DeleteResult = await self.master(DeleteRequest(path, recursive))
        return result

    async def set_replication(self, path: str, replication: int) -> FileStatus:
        status: FileStatus = await self.master(SetReplicationRequest(path, replication))
        return status

    async def disk_usage(self, path: str) -> DiskUsageReply:
        """Files, directories, bytes and replicated bytes (length x replication) under ``path``, and under each
        entry of a directory."""
        reply: DiskUsageReply = await self.master(DiskUsage(path))
        return reply

    async def placement(self, path: str) -> PlacementReply:
        """Where each chunk of a file is: its replicas, their racks and states (the master leader's view)."""
        reply: PlacementReply = await self.master(Placement(path))
        return reply

    # -- files ---------------------------------------------------------------------------------------------------

    async def create(
        self,
        path: str,
        *,
        overwrite: bool = False,
        replication: int = 0,
        chunk_size_bytes: int = 0,
        file_type: FileType | str = FileType.NORMAL,
        min_write_replicas: int = 0,
        parents: bool = True,
        mode: LeaseMode | str = LeaseMode.APPEND,
    ) -> Any:
        """Create a file and open it for writing (0 settings: the cluster's defaults). A log file
        (``file_type="log"``) is written to every replica in parallel, append only."""
        from feitian.dfs.client.write import FileWriter

        request = CreateRequest(
            path,
            self.holder,
            FileType(file_type),
            replication,
            chunk_size_bytes,
            min_write_replicas,
            overwrite,
            parents,
            LeaseMode(mode),
        )
        try:
            reply: OpenReply = await self.master(request)
        except UnavailableError as exc:
            if not isinstance(exc, ConnectionLostError) and exc.fields.get("outcome") != "unknown":
                raise
            reply = await self._created_or_retry(request)
        return FileWriter(self, path, reply, LeaseMode(mode))

    async def _created_or_retry(self, request: CreateRequest) -> OpenReply:
        """The create's outcome is unknown (a connection broke, a leader changed): if it happened, the file is
        ours (our lease); otherwise create again."""
        try:
            reply: OpenReply = await self.master(OpenWrite(request.path, self.holder, request.mode))
            if reply.status.lease_holder == self.holder and reply.status.length == 0:
                return reply
        except FeitianError:
            pass
        try:
            created: OpenReply = await self.master(request)
        except AlreadyExistsError:
            raise ConflictError(f"create {request.path}: it exists (created by someone else?)") from None
        return created

    async def open_write(self, path: str, *, mode: LeaseMode | str = LeaseMode.APPEND) -> Any:
        """Open an existing file for writing: ``append`` (at its end) or ``random`` (``pwrite`` anywhere up to
        its end). Refused with ConflictError(reason=open_for_writing) while another writer holds it."""
        from feitian.dfs.client.write import FileWriter

        reply: OpenReply = await self.master(OpenWrite(path, self.holder, LeaseMode(mode)))
        return FileWriter(self, path, reply, LeaseMode(mode))

    async def open_read(self, path: str) -> Any:
        from feitian.dfs.client.read import FileReader

        return FileReader(self, path)

    async def read(self, path: str, offset: int = 0, length: int = -1) -> bytes:
        """Bytes ``[offset, offset + length)`` (``length`` -1: to the end). Past the end: InvalidArgumentError."""
        from feitian.dfs.client.read import FileReader

        return await FileReader(self, path).read(offset, length)

    async def write_file(self, path: str, data: bytes | bytearray | memoryview, **create: Any) -> int:
        """Create (``overwrite`` by default) and write a whole file; returns its length once durable. If writing
        fails the file is removed (no partial file is left, nor a lease that blocks the next attempt)."""
        create.setdefault("overwrite", True)
        writer = await self.create(path, **create)
        try:
            await writer.write(data)
            length: int = await writer.close()
        except BaseException:
            await writer.abort(remove=True)
            raise
        return length

    async def append(self, path: str, data: bytes | bytearray | memoryview) -> int:
        """Append to an existing file (created if missing); returns the new length once durable."""
        try:
            writer = await self.open_write(path)
        except FeitianError as exc:
            if exc.code != "not_found":
                raise
            writer = await self.create(path)
        try:
            await writer.write(data)
            length: int = await writer.close()
        except BaseException:
            await writer.abort()  # releases the lease; what was acknowledged stays
            raise
        return length

    async def tail(
        self, path: str, offset: int = 0, *, follow: bool = True, poll_s: float = 0.1
    ) -> AsyncIterator[bytes]:
        """Bytes of a file from ``offset`` as they become readable (a log being written: acknowledged appends).
        Without ``follow`` it stops at the current end."""
        from feitian.dfs.client.read import tail

        async for data in tail(self, path, offset, follow=follow, poll_s=poll_s):
            yield data

    # -- administration ------------------------------------------------------------------------------------------

    async def fsck(self) -> FsckReply:
        reply: FsckReply = await self.master(Fsck())
        return reply

    async def servers(self) -> tuple[ServerStatus, ...]:
        reply: tuple[ServerStatus, ...] = await self.master(Servers())
        return reply

    async def balance(self) -> BalanceReply:
        reply: BalanceReply = await self.master(Balance())
        return reply

    async def decommission(self, server_id: str, *, cancel: bool = False) -> int:
        """Migrate every chunk off ``server_id``; it is then decommissioned (kept out, even if it heartbeats)
        until :meth:`recommission`. ``cancel`` is :meth:`recommission`. Answers how many replicas it holds."""
        held: int = await self.master(Decommission(server_id, cancel))
        return held

    async def recommission(self, server_id: str) -> int:
        """Put a decommissioning or decommissioned chunk server back in service (the balancer fills it again)."""
        return await self.decommission(server_id, cancel=True)

    async def master_status(self, address: str) -> MasterStatusReply:
        reply: MasterStatusReply = await self.rpc.call(address, MasterStatus(), timeout=5)
        return reply

    async def wait_healthy(self, timeout_s: float = 60.0, poll_s: float = 0.2) -> FsckReply:
        """Wait until fsck reports nothing missing, corrupt or under-replicated, and no copy in flight."""
        deadline_ns = self.clock.monotonic_ns() + int(timeout_s * 1e9)
        while True:
            report = await self.fsck()
            if report.healthy and not report.copies_in_flight and not report.stale:
                return report
            if self.clock.monotonic_ns() > deadline_ns:
                raise UnavailableError(f"not healthy after {timeout_s:.0f}s: {report}")
            await self.clock.sleep(poll_s)


fsspec.register_implementation("pangu", "feitian.dfs.client.fsspec_adapter.PanguFileSystem", clobber=True)
