"""The master's replicated state machine: the namespace, files and their chunks, leases, chunk servers.

``DfsStateMachine`` plugs into :class:`feitian.replica.driver.Replica` (``apply``, ``snapshot``, ``restore``).
Every command is decided by the leader (chunk ids, servers, versions, lease expiries, the time) and applying it
is deterministic. A refused command returns a :class:`FeitianError` *value* and changes nothing. A client's
write carrying a :class:`~feitian.replica.core.RequestKey` is applied once: a retry (after a lost reply or a
leader change) gets the first result from the replicated-service kit's dedupe table, kept in snapshots. Reads are
methods (:mod:`feitian.dfs.core.reads`); the leader-side soft state (liveness, reports) is in
:mod:`feitian.dfs.core.cluster_state`.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import msgspec

from feitian.dfs.core.chunk_table import ChunkTable
from feitian.dfs.core.commands import (
    MOVE_REASONS,
    AcquireLease,
    AddChunk,
    AddReplica,
    BumpChunkVersion,
    CloseFile,
    Command,
    CommitChunk,
    Create,
    CreateResult,
    Delete,
    DeleteResult,
    LeaseGrant,
    Mkdir,
    MkdirResult,
    RegisterServer,
    RemoveReplica,
    RemoveServer,
    Rename,
    RenameResult,
    RenewLease,
    SetReplication,
    SetServerState,
    decode_command,
)
from feitian.dfs.core.config import NamespaceConfig
from feitian.dfs.core.leases import check_expiry, check_lease, describe_time, takeover_blocked
from feitian.dfs.core.reads import NamespaceReads
from feitian.dfs.core.records import (
    ChunkLocation,
    ChunkRecord,
    DirNode,
    FileNode,
    FileStatus,
    FileType,
    Lease,
    LeaseMode,
    ServerRecord,
    ServerState,
)
from feitian.dfs.core.tree import Tree
from feitian.errors import ConflictError, ConflictReason, FeitianError, InvalidArgumentError
from feitian.replica.core import ClientRecord, DedupeTable, ReplyCodec, StoredReply, apply_once

__all__ = ["DEDUPE_WINDOW", "MAX_DEDUPE_CLIENTS", "DfsStateMachine"]

# Format 1; snapshots written before the dedupe table existed (no ``clients``) load with an empty table.
SNAPSHOT_FORMAT = 1
# Results remembered per client: a DFS client keeps at most this many namespace writes in flight (``feitian bench
# dfs`` creates 256 files at once through one client, so this is well above that).
DEDUPE_WINDOW = 1024
MAX_DEDUPE_CLIENTS = 2048  # clients remembered (each command-line run is one); the least recently used go first
_REPLIES = ReplyCodec((MkdirResult, CreateResult, RenameResult, DeleteResult, FileStatus, LeaseGrant, int))


class _Snapshot(msgspec.Struct, array_like=True, forbid_unknown_fields=True):
    format: int
    applied_index: int
    clock_ns: int
    next_inode: int
    next_lease_id: int
    next_chunk_id: int
    dirs: list[DirNode]
    files: list[FileNode]
    chunks: list[ChunkRecord]
    servers: list[ServerRecord]
    # The dedupe table (least recently used first), as its own msgpack: its records hold int-keyed dicts, which the
    # deterministic encoder above refuses; their order is the table's (replicated) order, so the bytes agree anyway.
    clients: bytes = b""


_SNAPSHOT_ENCODER = msgspec.msgpack.Encoder(order="deterministic")
_CLIENTS_DECODER = msgspec.msgpack.Decoder(list[ClientRecord[StoredReply]])


class DfsStateMachine(NamespaceReads):
    """All DFS metadata, in memory. ``apply(index, data)`` runs one encoded :data:`Command`."""

    def __init__(self, config: NamespaceConfig | None = None) -> None:
        self.config = (config or NamespaceConfig()).validate()
        self.tree = Tree(self.config)
        self.table = ChunkTable(self.config)
        self.applied_index = 0
        self.clock_ns = 0  # the largest leader time seen in a command
        self.next_lease_id = 1
        self.dedupe: DedupeTable[StoredReply] = DedupeTable(DEDUPE_WINDOW, MAX_DEDUPE_CLIENTS)
        self._ends: dict[int, list[int]] = {}  # file id -> cumulative chunk end offsets (a cache)
        self._leased: set[int] = set()  # ids of files with a lease record (an index)
        self._handlers: dict[type[Any], Callable[[Any], Any]] = {
            Mkdir: self._mkdir,
            Create: self._create,
            Rename: self._rename,
            Delete: self._delete,
            SetReplication: self._set_replication,
            AcquireLease: self._acquire_lease,
            RenewLease: self._renew_lease,
            CloseFile: self._close,
            AddChunk: self._add_chunk,
            CommitChunk: self._commit_chunk,
            BumpChunkVersion: self._bump_version,
            AddReplica: self._add_replica,
            RemoveReplica: self._remove_replica,
            RegisterServer: self._register_server,
            SetServerState: self._set_server_state,
            RemoveServer: self._remove_server,
        }

    # -- the replicated state machine ----------------------------------------------------------------------------

    def apply(self, index: int, data: bytes) -> Any:
        """Apply one committed entry: the command's result, or the FeitianError refusing it (nothing changed)."""
        self.applied_index = index
        try:
            command = decode_command(data)
        except FeitianError as exc:
            return exc
        return self.apply_command(command)

    def apply_command(self, command: Command) -> Any:
        now_ns = getattr(command, "now_ns", None)
        if now_ns is not None:
            self.clock_ns = max(self.clock_ns, now_ns)
        handler = self._handlers[type(command)]
        key = getattr(command, "request", None)
        return apply_once(self.dedupe, _REPLIES, type(command).__name__, key, lambda: handler(command))

    def snapshot(self) -> bytes:
        dirs = sorted((n for n in self.tree.nodes.values() if isinstance(n, DirNode)), key=lambda n: n.inode)
        files = sorted((n for n in self.tree.nodes.values() if isinstance(n, FileNode)), key=lambda n: n.inode)
        return _SNAPSHOT_ENCODER.encode(
            _Snapshot(
                format=SNAPSHOT_FORMAT,
                applied_index=self.applied_index,
                clock_ns=self.clock_ns,
                next_inode=self.tree.next_inode,
                next_lease_id=self.next_lease_id,
                next_chunk_id=self.table.next_chunk_id,
                dirs=dirs,
                files=files,
                chunks=[self.table.chunks[i] for i in sorted(self.table.chunks)],
                servers=[self.table.servers[s] for s in sorted(self.table.servers)],
                clients=msgspec.msgpack.encode(list(self.dedupe.clients.values())) if self.dedupe.clients else b"",
            )
        )

    def restore(self, data: bytes) -> None:
        snap = msgspec.msgpack.decode(data, type=_Snapshot)
        if snap.format != SNAPSHOT_FORMAT:
            raise InvalidArgumentError(
                f"dfs restore: snapshot format {snap.format}, this build reads {SNAPSHOT_FORMAT}"
            )
        tree = Tree(self.config)
        tree.nodes = {d.inode: d for d in snap.dirs}
        tree.nodes.update((f.inode, f) for f in snap.files)
        tree.next_inode = snap.next_inode
        table = ChunkTable(self.config)
        table.chunks = {c.chunk_id: c for c in snap.chunks}
        table.servers = {s.server_id: s for s in snap.servers}
        table.next_chunk_id = snap.next_chunk_id
        table.rebuild_index()
        dedupe: DedupeTable[StoredReply] = DedupeTable(DEDUPE_WINDOW, MAX_DEDUPE_CLIENTS)
        dedupe.restore(_CLIENTS_DECODER.decode(snap.clients) if snap.clients else [])
        self.tree, self.table, self.dedupe = tree, table, dedupe
        self.applied_index, self.clock_ns, self.next_lease_id = snap.applied_index, snap.clock_ns, snap.next_lease_id
        self._ends.clear()
        self._leased = {f.inode for f in snap.files if f.lease is not None}

    # -- helpers -------------------------------------------------------------------------------------------------

    def _changed(self, file: FileNode) -> None:
        """Every change to a file's chunk list or chunk lengths goes through here (drops the offsets cache)."""
        self._ends.pop(file.inode, None)
        file.mtime_ns = self.clock_ns

    def _free(self, file: FileNode) -> int:
        """Drop a file's chunks (the file is being deleted or replaced)."""
        self._ends.pop(file.inode, None)
        self._leased.discard(file.inode)
        return self.table.drop(file.chunks)

    def _set_lease(self, file: FileNode, lease: Lease | None) -> None:
        file.lease = lease
        if lease is None:
            self._leased.discard(file.inode)
        else:
            self._leased.add(file.inode)

    def _file_chunk(
        self, op: str, file_id: int, lease_id: int, chunk_id: int
    ) -> tuple[FileNode, str, Lease, ChunkRecord]:
        file = self.tree.file(op, file_id)
        path = self.tree.path_of(file.inode)
        lease = check_lease(op, path, file, lease_id, self.clock_ns)
        chunk = self.table.chunk(op, chunk_id)
        if chunk.file_id != file.inode:
            raise InvalidArgumentError(f"{op} {path}: chunk {chunk_id} belongs to another file", chunk_id=chunk_id)
        return file, path, lease, chunk

    def _check_length(self, op: str, path: str, file: FileNode, chunk: ChunkRecord, length: int) -> None:
        if length < chunk.length:
            raise ConflictError(
                f"{op} {path}: chunk {chunk.chunk_id} length {length} would drop committed bytes (committed "
                f"{chunk.length})",
                chunk_id=chunk.chunk_id,
                committed=chunk.length,
                given=length,
            )
        if length > file.chunk_size_bytes:
            raise InvalidArgumentError(
                f"{op} {path}: chunk {chunk.chunk_id} length {length} exceeds the chunk size {file.chunk_size_bytes}"
            )

    def _set_length(self, file: FileNode, chunk: ChunkRecord, length: int) -> None:
        file.length += length - chunk.length
        chunk.length = length
        self._changed(file)

    def _check_new_servers(self, op: str, chunk: ChunkRecord | None, replicas: tuple[str, ...]) -> None:
        for server_id in replicas:
            if chunk is not None and server_id in chunk.replicas:
                continue
            state = self.table.servers[server_id].state
            if state is not ServerState.ACTIVE:
                raise InvalidArgumentError(f"{op}: chunk server {server_id!r} is {state}, it takes no new chunks")

    def _location(self, chunk: ChunkRecord) -> ChunkLocation:
        file = self.tree.nodes[chunk.file_id]
        assert isinstance(file, FileNode)
        return self.location_at(file, chunk.index)

    def _validate_file_params(self, op: str, path: str, c: Create) -> tuple[int, int, int]:
        config = self.config
        replication = c.replication or config.default_replication
        chunk_size = c.chunk_size_bytes or config.default_chunk_size_bytes
        min_write = c.min_write_replicas or replication
        problems = []
        if not 1 <= replication <= config.max_replication:
            problems.append(f"replication {replication} outside 1..{config.max_replication}")
        if not 1 <= min_write <= replication:
            problems.append(f"min_write_replicas {min_write} outside 1..replication ({replication})")
        if not config.min_chunk_size_bytes <= chunk_size <= config.max_chunk_size_bytes:
            problems.append(
                f"chunk size {chunk_size} outside {config.min_chunk_size_bytes}..{config.max_chunk_size_bytes}"
            )
        elif chunk_size % config.block_size_bytes:
            problems.append(f"chunk size {chunk_size} is not a multiple of the block size {config.block_size_bytes}")
        if c.holder:
            self.table.check_id(f"{op} {path}", "lease holder", c.holder)
            check_expiry(op, path, self.clock_ns, c.lease_expires_ns, config)
            if c.file_type is FileType.LOG and c.lease_mode is LeaseMode.RANDOM:
                problems.append("log files are append-only: a random-write lease is not allowed")
        if problems:
            raise InvalidArgumentError(f"{op} {path}: " + "; ".join(problems), path=path, problems=problems)
        return replication, chunk_size, min_write

    def _new_lease(self, holder: str, mode: LeaseMode, expires_ns: int) -> Lease:
        lease = Lease(self.next_lease_id, holder, mode, self.clock_ns, expires_ns)
        self.next_lease_id += 1
        return lease

    def _busy(self, op: str, path: str, lease: Lease) -> ConflictError:
        free_ns = lease.expires_ns + self.config.takeover_grace_ns
        return ConflictError(
            f"{op} {path}: file is open for writing by {lease.holder!r} (lease {lease.lease_id} expires at "
            f"{describe_time(lease.expires_ns, self.clock_ns)})",
            hint=f"if that writer is gone, the master recovers the file at {describe_time(free_ns, self.clock_ns)}",
            path=path,
            holder=lease.holder,
            lease_id=lease.lease_id,
            expires_ns=lease.expires_ns,
            reason=ConflictReason.OPEN_FOR_WRITING,
        )

    # -- namespace commands --------------------------------------------------------------------------------------

    def _mkdir(self, c: Mkdir) -> MkdirResult:
        inode, created = self.tree.mkdir("mkdir", c.path, c.parents, self.clock_ns)
        return MkdirResult(inode, created)

    def _create(self, c: Create) -> CreateResult:
        op = "create"
        replication, chunk_size, min_write = self._validate_file_params(op, c.path, c)
        segments, base, missing, replaced = self.tree.prepare_file(op, c.path, c.parents, c.overwrite)
        now = self.clock_ns
        old_lease = replaced.lease if replaced is not None else None
        if old_lease is not None and old_lease.holder != c.holder and takeover_blocked(old_lease, now, self.config):
            raise self._busy(op, c.path, old_lease)
        lease = self._new_lease(c.holder, c.lease_mode, c.lease_expires_ns) if c.holder else None
        freed = self._free(replaced) if replaced is not None else 0

        def make(inode: int, parent: int) -> FileNode:
            return FileNode(
                inode, parent, segments[-1], c.file_type, replication, min_write, chunk_size, [], 0, now, now, lease
            )

        file = self.tree.add_file(segments, base, missing, make, now)
        self._set_lease(file, lease)
        return CreateResult(file.inode, lease.lease_id if lease else 0, lease.expires_ns if lease else 0, freed)

    def _rename(self, c: Rename) -> RenameResult:
        op = "rename"
        node, parent, name, replaced = self.tree.prepare_rename(op, c.src, c.dst, c.overwrite)
        if replaced is not None and takeover_blocked(replaced.lease, self.clock_ns, self.config):
            assert replaced.lease is not None
            raise self._busy(op, c.dst, replaced.lease)
        freed = self._free(replaced) if replaced is not None else 0
        self.tree.move(node, parent, name, self.clock_ns)
        return RenameResult(node.inode, freed)

    def _delete(self, c: Delete) -> DeleteResult:
        op = "delete"
        node, subtree = self.tree.prepare_delete(op, c.path, c.recursive)
        files = [n for n in subtree if isinstance(n, FileNode)]
        if c.lease_id:
            if not isinstance(node, FileNode):
                raise InvalidArgumentError(f"{op} {c.path}: a writer's delete names a file, not a directory")
            check_lease(op, c.path, node, c.lease_id, self.clock_ns, allow_expired=True)
        elif not c.force:
            for file in files:
                if file.lease is not None and takeover_blocked(file.lease, self.clock_ns, self.config):
                    raise self._busy(op, self.tree.path_of(file.inode), file.lease)
        freed = sum(self._free(file) for file in files)
        self.tree.remove(node, subtree, self.clock_ns)
        return DeleteResult(len(files), len(subtree) - len(files), freed)

    def _set_replication(self, c: SetReplication) -> FileStatus:
        op = "set_replication"
        file = self.tree.resolve_file(op, c.path)
        if not 1 <= c.replication <= self.config.max_replication:
            raise InvalidArgumentError(
                f"{op} {c.path}: replication {c.replication} outside 1..{self.config.max_replication}"
            )
        file.replication = c.replication
        file.min_write_replicas = min(file.min_write_replicas, c.replication)
        file.mtime_ns = self.clock_ns
        return self.status_of(file, c.path)

    # -- leases --------------------------------------------------------------------------------------------------

    def _acquire_lease(self, c: AcquireLease) -> LeaseGrant:
        op = "open for writing"
        file = self.tree.resolve_file(op, c.path)
        self.table.check_id(f"{op} {c.path}", "lease holder", c.holder)
        check_expiry(op, c.path, self.clock_ns, c.expires_ns, self.config)
        if file.file_type is FileType.LOG and c.mode is LeaseMode.RANDOM:
            raise InvalidArgumentError(f"{op} {c.path}: log files are append-only, a random-write lease is refused")
        lease = file.lease
        if lease is not None and lease.holder == c.holder and lease.mode is c.mode:
            lease.expires_ns = c.expires_ns
        elif lease is not None and lease.holder != c.holder and takeover_blocked(lease, self.clock_ns, self.config):
            raise self._busy(op, c.path, lease)
        else:
            lease = self._new_lease(c.holder, c.mode, c.expires_ns)
            self._set_lease(file, lease)
        return LeaseGrant(file.inode, lease.lease_id, lease.mode, lease.expires_ns, file.length)

    def _renew_lease(self, c: RenewLease) -> LeaseGrant:
        op = "renew lease"
        file = self.tree.file(op, c.file_id)
        path = self.tree.path_of(file.inode)
        lease = check_lease(op, path, file, c.lease_id, self.clock_ns, allow_expired=True)
        check_expiry(op, path, self.clock_ns, c.expires_ns, self.config)
        lease.expires_ns = c.expires_ns
        return LeaseGrant(file.inode, lease.lease_id, lease.mode, lease.expires_ns, file.length)

    def _close(self, c: CloseFile) -> int:
        op = "close"
        file = self.tree.file(op, c.file_id)
        path = self.tree.path_of(file.inode)
        check_lease(op, path, file, c.lease_id, self.clock_ns, allow_expired=True)
        if c.last_chunk_length >= 0 or c.seal_last:
            if not file.chunks:
                raise InvalidArgumentError(f"{op} {path}: the file has no chunk to commit a length to")
            chunk = self.table.chunks[file.chunks[-1]]
            length = c.last_chunk_length if c.last_chunk_length >= 0 else chunk.length
            if chunk.sealed:
                if length != chunk.length:
                    raise ConflictError(f"{op} {path}: last chunk {chunk.chunk_id} is sealed at {chunk.length} bytes")
            else:
                self._check_writer(op, path, chunk, c.lease_id)
                self._check_length(op, path, file, chunk, length)
                self._set_length(file, chunk, length)
                chunk.sealed = c.seal_last
        self._set_lease(file, None)
        file.mtime_ns = self.clock_ns
        return file.length

    # -- chunks --------------------------------------------------------------------------------------------------

    @staticmethod
    def _check_writer(op: str, path: str, chunk: ChunkRecord, lease_id: int) -> None:
        if chunk.writer_lease_id != lease_id:
            raise ConflictError(
                f"{op} {path}: chunk {chunk.chunk_id} version {chunk.version} was set by lease "
                f"{chunk.writer_lease_id}; bump its version under lease {lease_id} before writing it",
                chunk_id=chunk.chunk_id,
                reason=ConflictReason.VERSION_NOT_OWNED,
            )

    def _add_chunk(self, c: AddChunk) -> ChunkLocation:
        op = "add chunk"
        file = self.tree.file(op, c.file_id)
        path = self.tree.path_of(file.inode)
        check_lease(op, path, file, c.lease_id, self.clock_ns)
        if len(file.chunks) >= self.config.max_chunks_per_file:
            raise InvalidArgumentError(
                f"{op} {path}: the file has max_chunks_per_file {self.config.max_chunks_per_file} chunks",
                limit=self.config.max_chunks_per_file,
            )
        self.table.check_new_id(op, c.chunk_id)
        replicas = self.table.check_replica_set(
            op, c.replicas, at_least=file.min_write_replicas, at_most=file.replication
        )
        self._check_new_servers(op, None, replicas)
        last = self.table.chunks[file.chunks[-1]] if file.chunks else None
        if last is not None and not last.sealed:
            if c.previous_length < 0:
                raise ConflictError(
                    f"{op} {path}: last chunk {last.chunk_id} is not sealed; give previous_length to seal it",
                    chunk_id=last.chunk_id,
                )
            self._check_writer(op, path, last, c.lease_id)
            self._check_length(op, path, file, last, c.previous_length)
        elif last is not None and c.previous_length >= 0 and c.previous_length != last.length:
            raise ConflictError(f"{op} {path}: last chunk {last.chunk_id} is sealed at {last.length} bytes")
        if last is not None and not last.sealed:
            self._set_length(file, last, c.previous_length)
            last.sealed = True
        chunk = ChunkRecord(c.chunk_id, file.inode, len(file.chunks), 1, list(replicas), 0, False, c.lease_id)
        self.table.add(chunk)
        file.chunks.append(chunk.chunk_id)
        self._changed(file)
        return self.location_at(file, len(file.chunks) - 1)

    def _commit_chunk(self, c: CommitChunk) -> ChunkLocation:
        op = "commit chunk"
        file, path, _, chunk = self._file_chunk(op, c.file_id, c.lease_id, c.chunk_id)
        if chunk.sealed:
            if c.length != chunk.length:
                raise ConflictError(
                    f"{op} {path}: chunk {chunk.chunk_id} is sealed at {chunk.length} bytes, not {c.length}",
                    chunk_id=chunk.chunk_id,
                )
            return self._location(chunk)
        self._check_writer(op, path, chunk, c.lease_id)
        self._check_length(op, path, file, chunk, c.length)
        self._set_length(file, chunk, c.length)
        chunk.sealed = c.seal
        return self._location(chunk)

    def _bump_version(self, c: BumpChunkVersion) -> ChunkLocation:
        op = "bump chunk version"
        file, path, lease, chunk = self._file_chunk(op, c.file_id, c.lease_id, c.chunk_id)
        if c.new_version != chunk.version + 1:
            raise ConflictError(
                f"{op} {path}: chunk {chunk.chunk_id} is at version {chunk.version}, new version must be "
                f"{chunk.version + 1}, got {c.new_version}",
                chunk_id=chunk.chunk_id,
                version=chunk.version,
            )
        if chunk.sealed:
            if lease.mode is not LeaseMode.RANDOM:
                raise ConflictError(
                    f"{op} {path}: chunk {chunk.chunk_id} is sealed and lease {lease.lease_id} is append-only",
                    chunk_id=chunk.chunk_id,
                )
            if c.length >= 0 and c.length != chunk.length:
                raise ConflictError(f"{op} {path}: chunk {chunk.chunk_id} is sealed at {chunk.length} bytes")
        elif c.length >= 0:
            self._check_length(op, path, file, chunk, c.length)
        at_least = 1 if c.seal and not chunk.sealed else file.min_write_replicas
        replicas = self.table.check_replica_set(op, c.replicas, at_least=at_least, at_most=file.replication)
        self._check_new_servers(op, chunk, replicas)
        chunk.version = c.new_version
        chunk.writer_lease_id = lease.lease_id
        self.table.set_replicas(chunk, replicas)
        if not chunk.sealed:
            if c.length >= 0:
                self._set_length(file, chunk, c.length)
            chunk.sealed = c.seal
        self._changed(file)
        return self._location(chunk)

    def _add_replica(self, c: AddReplica) -> ChunkLocation:
        op = "add replica"
        chunk = self.table.chunk(op, c.chunk_id)
        server = self.table.server(op, c.server_id)
        what = f"{op} {c.server_id} to chunk {chunk.chunk_id}"
        if c.version != chunk.version or c.length != chunk.length:
            raise ConflictError(
                f"{what}: the copy is version {c.version} with {c.length} bytes, the chunk is version "
                f"{chunk.version} with {chunk.length} bytes; discard the copy",
                chunk_id=chunk.chunk_id,
                reason=ConflictReason.STALE_COPY,
            )
        if c.server_id in chunk.replicas:
            return self._location(chunk)
        if server.state is not ServerState.ACTIVE:
            raise InvalidArgumentError(f"{what}: the server is {server.state}")
        if not self.chunk_is_quiescent(chunk.chunk_id, self.clock_ns):
            raise ConflictError(
                f"{what}: the chunk is being written; copy it when its writer is done", reason=ConflictReason.BUSY
            )
        if len(chunk.replicas) >= self.config.max_replication:
            raise InvalidArgumentError(f"{what}: the chunk already has max_replication {self.config.max_replication}")
        self.table.set_replicas(chunk, [*chunk.replicas, c.server_id])
        return self._location(chunk)

    def _remove_replica(self, c: RemoveReplica) -> ChunkLocation:
        op = "remove replica"
        chunk = self.table.chunk(op, c.chunk_id)
        if c.server_id not in chunk.replicas:
            return self._location(chunk)
        file = self.tree.nodes[chunk.file_id]
        assert isinstance(file, FileNode)
        if c.reason in MOVE_REASONS and len(chunk.replicas) - 1 < file.replication:
            raise ConflictError(
                f"{op} {c.server_id} from chunk {chunk.chunk_id} ({c.reason}): it would leave "
                f"{len(chunk.replicas) - 1} replicas, the file needs {file.replication}",
                chunk_id=chunk.chunk_id,
                reason=ConflictReason.UNDER_REPLICATED,
            )
        self.table.set_replicas(chunk, [s for s in chunk.replicas if s != c.server_id])
        return self._location(chunk)

    # -- chunk servers -------------------------------------------------------------------------------------------

    def _register_server(self, c: RegisterServer) -> bool:
        return self.table.register_server(
            "register server", c.server_id, c.address, c.rack, c.capacity_bytes, self.clock_ns
        )

    def _set_server_state(self, c: SetServerState) -> None:
        self.table.set_server_state("set server state", c.server_id, c.state)

    def _remove_server(self, c: RemoveServer) -> int:
        return len(self.table.remove_server("remove server", c.server_id, c.force))

    # -- invariants ----------------------------------------------------------------------------------------------

    def validate(self) -> None:
        """Raise InternalError if an invariant of the metadata is broken (tests call it after every step)."""
        from feitian.dfs.core.invariants import check_invariants

        check_invariants(self)
