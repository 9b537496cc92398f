"""The master's RPC service: every ``dfs.*`` method (rules in :mod:`feitian.dfs.messages.master`).

Writes go through the replicated log (``propose``); reads pass a read barrier first. Each handler refuses on a
follower with NotLeaderError naming the leader. The namespace writes a client may retry (mkdir, rename, delete,
set replication, create, open for writing, close) carry its ``client_id`` and ``request_seq``: the command then
carries a :class:`~feitian.replica.core.RequestKey` and is applied once, a retry answered with the first result.
"""

from __future__ import annotations

from typing import Any

from feitian.base.units import SECOND_NS
from feitian.dfs.core import (
    AcquireLease,
    ChunkLocation,
    CloseFile,
    CommitChunk,
    Create,
    CreateResult,
    Delete,
    DeleteResult,
    DirEntry,
    FileStatus,
    LeaseGrant,
    Mkdir,
    MkdirResult,
    Rename,
    RenameResult,
    RenewLease,
    ReplicaState,
    ServerState,
    SetReplication,
    SetServerState,
    WritePlan,
    spread,
)
from feitian.dfs.core.paths import join_path, split_path
from feitian.dfs.core.records import FileNode
from feitian.dfs.master.master import DfsMaster
from feitian.dfs.messages.master import (
    RULES,
    AddChunkRequest,
    AuthorizeCreate,
    Balance,
    BalanceReply,
    ChunkGrant,
    ChunkPlacement,
    ChunkReport,
    CloseRequest,
    CommitRequest,
    CreateRequest,
    Decommission,
    DeleteRequest,
    DiskUsage,
    DiskUsageReply,
    Exists,
    Fsck,
    FsckReply,
    Heartbeat,
    HeartbeatReply,
    ListRequest,
    Locate,
    LocateReply,
    MasterStatus,
    MasterStatusReply,
    MkdirRequest,
    OpenChunk,
    OpenReply,
    OpenWrite,
    Placement,
    PlacementReply,
    PlanWriteRequest,
    RecoverChunk,
    ReleaseRequest,
    RenameRequest,
    RenewRequest,
    ReplicaPlacement,
    ReportCorrupt,
    Servers,
    ServerStatus,
    SetReplicationRequest,
    Stat,
    Tokens,
    WriteTokens,
)
from feitian.errors import AccessReason, ConflictError, ConflictReason, NotFoundError, PermissionDeniedError
from feitian.replica.core import RequestKey, request_key
from feitian.rpc import CallContext, Server

__all__ = ["MasterService"]


def _caller_key(ctx: CallContext) -> bytes:
    principal = ctx.peer.principal
    return principal.public_key if principal is not None else b""


def _principal_id(ctx: CallContext) -> str:
    principal = ctx.peer.principal
    return principal.id if principal is not None else ""


def _request(ctx: CallContext, req: Any) -> RequestKey | None:
    """The request's dedupe key (None when the client sent no ``client_id``)."""
    return request_key(_principal_id(ctx), req.client_id, req.request_seq, req)


class MasterService:
    def __init__(self, master: DfsMaster) -> None:
        self.master = master
        self.sm = master.sm

    def register(self, server: Server) -> None:
        for request_type, fn in self._handlers().items():
            server.add_handler(request_type, fn, requires=RULES[request_type])

    def _handlers(self) -> dict[type[Any], Any]:
        return {
            MkdirRequest: self.mkdir,
            Stat: self.stat,
            Exists: self.exists,
            ListRequest: self.list_dir,
            AuthorizeCreate: self.authorize_create,
            RenameRequest: self.rename,
            DeleteRequest: self.delete,
            SetReplicationRequest: self.set_replication,
            DiskUsage: self.disk_usage,
            Placement: self.placement,
            ReleaseRequest: self.release,
            CreateRequest: self.create,
            OpenWrite: self.open_write,
            RenewRequest: self.renew,
            CloseRequest: self.close,
            AddChunkRequest: self.add_chunk,
            CommitRequest: self.commit,
            PlanWriteRequest: self.plan_write,
            OpenChunk: self.open_chunk,
            RecoverChunk: self.recover,
            Tokens: self.tokens,
            WriteTokens: self.write_tokens,
            Locate: self.locate,
            ReportCorrupt: self.report_corrupt,
            Heartbeat: self.heartbeat,
            ChunkReport: self.chunk_report,
            Fsck: self.fsck,
            Servers: self.servers,
            Balance: self.balance,
            Decommission: self.decommission,
            MasterStatus: self.status,
        }

    # -- helpers -------------------------------------------------------------------------------------------------

    async def _read(self) -> Any:
        leadership = self.master.leader()
        await self.master.leader_read_barrier()
        return leadership

    def _done_before(self, op: str, request: RequestKey | None) -> bool:
        """Whether this request was applied already (a retry): its checks were passed then."""
        return request is not None and self.sm.dedupe.check(op, request) is not None

    def _open_file(self, op: str, path: str, file_id: int) -> FileNode:
        """The open file ``file_id``, which must be at ``path`` (the path the caller's right was checked on)."""
        file = self.sm.tree.file(op, file_id)
        actual = self.sm.path_of(file_id)
        if actual != join_path(split_path(op, path, self.sm.config)):
            raise PermissionDeniedError(f"{op} {path}: file {file_id} is {actual}", reason=AccessReason.WRONG_PATH)
        return file

    def _lease_expiry(self) -> int:
        return self.master.now_ns() + int(self.master.options.lease_ttl_s * SECOND_NS)

    def _open_reply(self, path: str, file_id: int, lease_id: int, expires_ns: int) -> OpenReply:
        status = self.sm.file_status(file_id)
        file = self.sm.tree.file("open", file_id)
        last = self.sm.chunk_location(file.chunks[-1]) if file.chunks else None
        return OpenReply(status, file_id, lease_id, expires_ns, self.sm.config.block_size_bytes, last)

    # -- namespace -----------------------------------------------------------------------------------------------

    async def mkdir(self, ctx: CallContext, req: MkdirRequest) -> MkdirResult:
        self.master.leader()
        command = Mkdir(req.path, self.master.now_ns(), req.parents, _request(ctx, req))
        result: MkdirResult = await self.master.propose_command(command)
        return result

    async def stat(self, ctx: CallContext, req: Stat) -> FileStatus:
        await self._read()
        return self.sm.stat(req.path)

    async def exists(self, ctx: CallContext, req: Exists) -> bool:
        await self._read()
        return self.sm.exists(req.path)

    async def list_dir(self, ctx: CallContext, req: ListRequest) -> tuple[DirEntry, ...]:
        await self._read()
        return self.sm.list_dir(req.path, start_after=req.start_after, limit=req.limit)

    async def authorize_create(self, ctx: CallContext, req: AuthorizeCreate) -> bytes:
        leadership = self.master.leader()
        return bytes(
            leadership.new_create_nonce(_principal_id(ctx), join_path(split_path("rename", req.path, self.sm.config)))
        )

    async def rename(self, ctx: CallContext, req: RenameRequest) -> RenameResult:
        leadership = self.master.leader()
        request = _request(ctx, req)
        if self.master.security is not None and not self._done_before("rename", request):
            dst = join_path(split_path("rename", req.dst, self.sm.config))
            if not leadership.take_create_nonce(req.create_nonce, _principal_id(ctx), dst):
                raise PermissionDeniedError(
                    f"rename {req.path} -> {req.dst}: no proof of the right to create {dst}",
                    hint="call dfs.AuthorizeCreate for the destination first (the client does)",
                    reason=AccessReason.NOT_GRANTED,
                )
        result: RenameResult = await self.master.propose_command(
            Rename(req.path, req.dst, self.master.now_ns(), req.overwrite, request)
        )
        return result

    async def delete(self, ctx: CallContext, req: DeleteRequest) -> DeleteResult:
        self.master.leader()
        command = Delete(
            req.path, self.master.now_ns(), req.recursive, lease_id=req.lease_id, request=_request(ctx, req)
        )
        result: DeleteResult = await self.master.propose_command(command)
        return result

    async def set_replication(self, ctx: CallContext, req: SetReplicationRequest) -> FileStatus:
        self.master.leader()
        status: FileStatus = await self.master.propose_command(
            SetReplication(req.path, req.replication, self.master.now_ns(), _request(ctx, req))
        )
        return status

    async def disk_usage(self, ctx: CallContext, req: DiskUsage) -> DiskUsageReply:
        await self._read()
        total, entries = self.sm.disk_usage(req.path)
        return DiskUsageReply(total, entries)

    async def placement(self, ctx: CallContext, req: Placement) -> PlacementReply:
        leadership = await self._read()
        file = self.sm.tree.resolve_file("locate", req.path)
        status = self.sm.file_status(file.inode)
        now = self.master.now_ns()
        cluster = leadership.cluster
        live_racks = cluster.live_racks(now)
        readable = (ReplicaState.GOOD, ReplicaState.UNCONFIRMED)
        chunks = []
        for index in range(len(file.chunks)):
            location = self.sm.location_at(file, index)
            states = cluster.replica_states(location.chunk_id, now)
            replicas = []
            for server_id in location.replicas:
                info = self.sm.server(server_id)
                replicas.append(ReplicaPlacement(server_id, info.rack if info else "?", str(states[server_id])))
            racks = len({r.rack for r in replicas if ReplicaState(r.state) in readable})
            wanted = min(file.replication, live_racks)
            chunks.append(
                ChunkPlacement(
                    location.chunk_id,
                    index,
                    location.version,
                    location.file_offset,
                    location.length,
                    location.sealed,
                    tuple(replicas),
                    racks,
                    wanted,
                )
            )
        return PlacementReply(status, tuple(chunks))

    # -- writing -------------------------------------------------------------------------------------------------

    async def create(self, ctx: CallContext, req: CreateRequest) -> OpenReply:
        leadership = self.master.leader()
        config = self.sm.config
        replication = req.replication or config.default_replication
        needed = req.min_write_replicas or replication
        chunk_size = req.chunk_size_bytes or config.default_chunk_size_bytes
        if 1 <= needed <= replication <= config.max_replication and chunk_size > 0:  # else the namespace refuses
            await leadership.check_placeable("create", req.path, needed, replication, chunk_size)
        expires = self._lease_expiry()
        result: CreateResult = await self.master.propose_command(
            Create(
                req.path,
                self.master.now_ns(),
                req.file_type,
                req.replication,
                req.chunk_size_bytes,
                req.min_write_replicas,
                req.overwrite,
                req.parents,
                req.holder,
                req.mode,
                expires,
                _request(ctx, req),
            )
        )
        return self._open_reply(req.path, result.file_id, result.lease_id, result.lease_expires_ns)

    async def open_write(self, ctx: CallContext, req: OpenWrite) -> OpenReply:
        self.master.leader()
        grant: LeaseGrant = await self.master.propose_command(
            AcquireLease(req.path, req.holder, req.mode, self.master.now_ns(), self._lease_expiry(), _request(ctx, req))
        )
        return self._open_reply(req.path, grant.file_id, grant.lease_id, grant.expires_ns)

    async def release(self, ctx: CallContext, req: ReleaseRequest) -> int:
        leadership = self.master.leader()
        file = self._open_file("release", req.path, req.file_id)
        return await leadership.release_lease(file, req.lease_id)

    async def renew(self, ctx: CallContext, req: RenewRequest) -> LeaseGrant:
        self.master.leader()
        self._open_file("renew lease", req.path, req.file_id)
        grant: LeaseGrant = await self.master.propose_command(
            RenewLease(req.file_id, req.lease_id, self.master.now_ns(), self._lease_expiry())
        )
        return grant

    async def close(self, ctx: CallContext, req: CloseRequest) -> int:
        self.master.leader()
        file = self._open_file("close", req.path, req.file_id)
        length: int = await self.master.propose_command(
            CloseFile(
                req.file_id,
                req.lease_id,
                self.master.now_ns(),
                req.last_chunk_length,
                bool(file.chunks),
                _request(ctx, req),
            )
        )
        return length

    async def add_chunk(self, ctx: CallContext, req: AddChunkRequest) -> ChunkGrant:
        leadership = self.master.leader()
        file = self._open_file("add chunk", req.path, req.file_id)
        last = file.chunks[-1] if file.chunks else 0
        if last != req.after_chunk:
            # A retry of an AddChunk that succeeded (its reply was lost) finds its own new, empty chunk.
            chunk = self.sm.table.chunks[last] if last else None
            before = file.chunks[-2] if len(file.chunks) > 1 else 0
            lease = file.lease
            if (
                chunk is not None
                and before == req.after_chunk
                and chunk.writer_lease_id == req.lease_id
                and chunk.length == 0
                and lease is not None
            ):
                location = self.sm.chunk_location(last)
                return leadership.grant(location, _caller_key(ctx), write=True, lease_expires_ns=lease.expires_ns)
            raise ConflictError(
                f"add chunk to {req.path}: the last chunk is {last}, not {req.after_chunk} (another writer?)",
                reason=ConflictReason.NOT_LAST_CHUNK,
            )
        grant: ChunkGrant = await leadership.add_chunk(
            file, req.lease_id, req.previous_length, req.exclude, _caller_key(ctx)
        )
        return grant

    async def commit(self, ctx: CallContext, req: CommitRequest) -> ChunkLocation:
        self.master.leader()
        self._open_file("commit chunk", req.path, req.file_id)
        location: ChunkLocation = await self.master.propose_command(
            CommitChunk(req.file_id, req.lease_id, req.chunk_id, req.length, req.seal, self.master.now_ns())
        )
        return location

    async def plan_write(self, ctx: CallContext, req: PlanWriteRequest) -> WritePlan:
        self.master.leader()
        self._open_file("write", req.path, req.file_id)
        return self.sm.plan_write(req.file_id, req.lease_id, req.offset, req.length, self.master.now_ns())

    async def open_chunk(self, ctx: CallContext, req: OpenChunk) -> ChunkGrant:
        leadership = self.master.leader()
        file = self._open_file("write", req.path, req.file_id)
        chunk = self.sm.table.chunk("write", req.chunk_id)
        if chunk.writer_lease_id == req.lease_id:
            lease = file.lease
            if lease is None or lease.lease_id != req.lease_id:
                raise ConflictError(
                    f"write {req.path}: lease {req.lease_id} is not the file's", reason=ConflictReason.STALE_LEASE
                )
            location = self.sm.chunk_location(req.chunk_id)
            return leadership.grant(location, _caller_key(ctx), write=True, lease_expires_ns=lease.expires_ns)
        grant: ChunkGrant = await leadership.recover_chunk(
            file, req.lease_id, req.chunk_id, chunk.version, (), chunk.length, True, _caller_key(ctx)
        )
        return grant

    async def recover(self, ctx: CallContext, req: RecoverChunk) -> ChunkGrant:
        leadership = self.master.leader()
        file = self._open_file("recover", req.path, req.file_id)
        lease = file.lease
        if lease is None or lease.lease_id != req.lease_id:
            raise ConflictError(
                f"recover {req.path}: lease {req.lease_id} is not the file's", reason=ConflictReason.STALE_LEASE
            )
        grant: ChunkGrant = await leadership.recover_chunk(
            file, req.lease_id, req.chunk_id, req.version, req.failed, req.acked_length, req.rebuild, _caller_key(ctx)
        )
        return grant

    async def write_tokens(self, ctx: CallContext, req: WriteTokens) -> ChunkGrant:
        leadership = self.master.leader()
        file = self._open_file("write", req.path, req.file_id)
        lease = file.lease
        chunk = self.sm.table.chunk("write", req.chunk_id)
        if lease is None or lease.lease_id != req.lease_id or chunk.writer_lease_id != req.lease_id:
            raise ConflictError(f"write {req.path}: lease {req.lease_id} does not write chunk {req.chunk_id}")
        location = self.sm.chunk_location(req.chunk_id)
        grant: ChunkGrant = leadership.grant(location, _caller_key(ctx), write=True, lease_expires_ns=lease.expires_ns)
        return grant

    # -- reading -------------------------------------------------------------------------------------------------

    async def locate(self, ctx: CallContext, req: Locate) -> LocateReply:
        leadership = await self._read()
        located = self.sm.locate(req.path, req.offset, req.length, allow_tail=req.allow_tail)
        key = _caller_key(ctx)
        grants = tuple(leadership.grant(loc, key, write=False) for loc in located.chunks)
        return LocateReply(located.file_id, located.file_length, located.tail_open, grants)

    async def tokens(self, ctx: CallContext, req: Tokens) -> ChunkGrant:
        leadership = await self._read()
        chunk = self.sm.table.chunk("read", req.chunk_id)
        if self.sm.path_of(chunk.file_id) != join_path(split_path("read", req.path, self.sm.config)):
            raise PermissionDeniedError(
                f"read {req.path}: chunk {req.chunk_id} is not in it", reason=AccessReason.WRONG_PATH
            )
        grant: ChunkGrant = leadership.grant(self.sm.chunk_location(req.chunk_id), _caller_key(ctx), write=False)
        return grant

    async def report_corrupt(self, ctx: CallContext, req: ReportCorrupt) -> None:
        leadership = self.master.leader()
        chunk = self.sm.table.chunks.get(req.chunk_id)
        if chunk is None:
            return
        if self.sm.path_of(chunk.file_id) != join_path(split_path("report", req.path, self.sm.config)):
            raise PermissionDeniedError(
                f"report {req.path}: chunk {req.chunk_id} is not in it", reason=AccessReason.WRONG_PATH
            )
        if req.server_id in chunk.replicas:
            leadership.cluster.report_corrupt(req.server_id, req.chunk_id)

    # -- chunk servers -------------------------------------------------------------------------------------------

    async def heartbeat(self, ctx: CallContext, req: Heartbeat) -> HeartbeatReply:
        reply: HeartbeatReply = await self.master.leader().heartbeat(ctx.peer.principal, req)
        return reply

    async def chunk_report(self, ctx: CallContext, req: ChunkReport) -> None:
        self.master.leader().chunk_report(ctx.peer.principal, req.server_id, req.chunks)

    # -- administration ------------------------------------------------------------------------------------------

    async def fsck(self, ctx: CallContext, req: Fsck) -> FsckReply:
        leadership = await self._read()
        report = leadership.cluster.fsck(self.master.now_ns())
        files = sum(1 for n in self.sm.tree.nodes.values() if isinstance(n, FileNode))
        return FsckReply(
            report.healthy,
            report.chunks,
            files,
            report.missing,
            report.corrupt,
            report.under_replicated,
            report.over_replicated,
            report.stale,
            report.dead_servers,
            report.unconfirmed,
            len(leadership.cluster.copies),
            report.misplaced,
        )

    async def servers(self, ctx: CallContext, req: Servers) -> tuple[ServerStatus, ...]:
        leadership = await self._read()
        now = self.master.now_ns()
        views = {v.server_id: v for v in leadership.cluster.server_views(now)}
        out = []
        for info in self.sm.servers():
            view = views[info.server_id]
            out.append(
                ServerStatus(
                    info.server_id,
                    info.address,
                    info.rack,
                    str(info.state),
                    view.live,
                    view.capacity_bytes,
                    view.used_bytes,
                    len(self.sm.chunks_on(info.server_id)),
                )
            )
        return tuple(out)

    async def balance(self, ctx: CallContext, req: Balance) -> BalanceReply:
        leadership = await self._read()
        before = spread(leadership.cluster.server_views(self.master.now_ns()))
        started: int = await leadership.tick(balance=True)
        leadership.balancing = True  # and on every round after, until nothing is left to move
        return BalanceReply(started, before)

    async def decommission(self, ctx: CallContext, req: Decommission) -> int:
        self.master.leader()
        info = self.sm.server(req.server_id)
        if info is None:
            op = "recommission" if req.cancel else "decommission"
            raise NotFoundError(
                f"{op} {req.server_id}: no such chunk server",
                hint="`feitian dfs servers` lists them",
                server_id=req.server_id,
            )
        if req.cancel:
            state = ServerState.ACTIVE
        elif info.state is ServerState.ACTIVE:
            state = ServerState.DECOMMISSIONING
        else:
            state = info.state  # decommissioning or decommissioned already: nothing to do
        if state is not info.state:
            await self.master.propose_command(SetServerState(req.server_id, state))
        return len(self.sm.chunks_on(req.server_id))

    async def status(self, ctx: CallContext, req: MasterStatus) -> MasterStatusReply:
        stats = self.master.replica.stats()
        files = sum(1 for n in self.sm.tree.nodes.values() if isinstance(n, FileNode))
        leader = self.master.replica.leader_address or ""
        return MasterStatusReply(
            self.master.node_name,
            stats.role,
            stats.term,
            leader,
            stats.applied_index,
            files,
            len(self.sm.table.chunks),
            len(self.sm.servers()),
        )
