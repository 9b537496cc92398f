"""Reads of the master's metadata: stat, list, exists, locate chunks for a byte range, plan a write.

These never change state. On a follower they are as fresh as its applied index; the service calls the
replica's ``read_barrier()`` first when a read must be linearizable.
"""

from __future__ import annotations

import bisect

import msgspec

from feitian.dfs.core.chunk_table import ChunkTable
from feitian.dfs.core.config import NamespaceConfig
from feitian.dfs.core.leases import check_lease, takeover_blocked
from feitian.dfs.core.paths import split_path
from feitian.dfs.core.records import (
    ROOT_INODE,
    ChunkLocation,
    DirEntry,
    DirNode,
    FileNode,
    FileStatus,
    FileType,
    LeaseMode,
    LocatedChunks,
    NodeKind,
    ServerInfo,
    ServerRecord,
    SpaceUsage,
    WritePlan,
)
from feitian.dfs.core.tree import Node, Tree
from feitian.errors import InvalidArgumentError

__all__ = ["ExpiredLease", "NamespaceReads"]


class ExpiredLease(msgspec.Struct, frozen=True):
    """A lease past its expiry and grace: the master recovers the file (see docs/dfs.md, lease recovery)."""

    file_id: int
    lease_id: int
    holder: str
    path: str
    expires_ns: int


class NamespaceReads:
    """The read side of :class:`~feitian.dfs.core.namespace.DfsStateMachine`."""

    config: NamespaceConfig
    tree: Tree
    table: ChunkTable
    clock_ns: int
    _ends: dict[int, list[int]]
    _leased: set[int]

    # -- files and directories -----------------------------------------------------------------------------------

    def status_of(self, node: Node, path: str) -> FileStatus:
        if isinstance(node, DirNode):
            return FileStatus(
                path,
                NodeKind.DIR,
                node.inode,
                entries=len(node.children),
                ctime_ns=node.ctime_ns,
                mtime_ns=node.mtime_ns,
            )
        lease = node.lease
        return FileStatus(
            path,
            NodeKind.FILE,
            node.inode,
            length=node.length,
            replication=node.replication,
            min_write_replicas=node.min_write_replicas,
            file_type=node.file_type,
            chunk_size_bytes=node.chunk_size_bytes,
            chunk_count=len(node.chunks),
            ctime_ns=node.ctime_ns,
            mtime_ns=node.mtime_ns,
            lease_holder=lease.holder if lease else None,
            lease_mode=lease.mode if lease else None,
            lease_expires_ns=lease.expires_ns if lease else 0,
        )

    def stat(self, path: str) -> FileStatus:
        segments, node = self.tree.resolve("stat", path)
        return self.status_of(node, "/" + "/".join(segments))

    def file_status(self, file_id: int) -> FileStatus:
        file = self.tree.file("stat", file_id)
        return self.status_of(file, self.tree.path_of(file_id))

    def path_of(self, inode: int) -> str:
        return self.tree.path_of(inode)

    def exists(self, path: str) -> bool:
        """False for a missing path or one below a file; InvalidArgumentError for a malformed path."""
        segments = split_path("exists", path, self.config)
        node = self.tree.nodes[ROOT_INODE]
        for name in segments:
            if not isinstance(node, DirNode) or name not in node.children:
                return False
            node = self.tree.nodes[node.children[name]]
        return True

    def list_dir(self, path: str, *, start_after: str = "", limit: int = 0) -> tuple[DirEntry, ...]:
        """Entries of a directory in name order, after ``start_after``; at most ``limit`` (and at most the
        configured ``max_list_entries``) — page with the last name returned."""
        directory = self.tree.resolve_dir("list", path)
        cap = self.config.max_list_entries if limit <= 0 else min(limit, self.config.max_list_entries)
        names = sorted(n for n in directory.children if n > start_after)[:cap]
        out = []
        for name in names:
            node = self.tree.nodes[directory.children[name]]
            if isinstance(node, DirNode):
                out.append(DirEntry(name, NodeKind.DIR, node.inode))
            else:
                out.append(DirEntry(name, NodeKind.FILE, node.inode, node.length))
        return tuple(out)

    def disk_usage(self, path: str) -> tuple[SpaceUsage, tuple[SpaceUsage, ...]]:
        """The space under ``path`` (a file or a whole tree), and for a directory the same for each entry, in
        name order. Walks the subtree: cost grows with its size."""
        segments, node = self.tree.resolve("du", path)
        base = "/" + "/".join(segments)
        children: tuple[SpaceUsage, ...] = ()
        if isinstance(node, DirNode):
            prefix = base.rstrip("/") + "/"
            children = tuple(
                self._usage_of(self.tree.nodes[node.children[name]], prefix + name) for name in sorted(node.children)
            )
        return self._usage_of(node, base), children

    def _usage_of(self, node: Node, path: str) -> SpaceUsage:
        files = dirs = size = replicated = 0
        for item in self.tree.walk(node):
            if isinstance(item, FileNode):
                files += 1
                size += item.length
                replicated += item.length * item.replication
            else:
                dirs += 1
        kind = NodeKind.DIR if isinstance(node, DirNode) else NodeKind.FILE
        return SpaceUsage(path, kind, files, dirs, size, replicated)

    # -- chunks of a file ----------------------------------------------------------------------------------------

    def chunk_ends(self, file: FileNode) -> list[int]:
        ends = self._ends.get(file.inode)
        if ends is None:
            ends, total = [], 0
            for chunk_id in file.chunks:
                total += self.table.chunks[chunk_id].length
                ends.append(total)
            self._ends[file.inode] = ends
        return ends

    def location_at(self, file: FileNode, index: int) -> ChunkLocation:
        chunk = self.table.chunks[file.chunks[index]]
        ends = self.chunk_ends(file)
        return ChunkLocation(
            chunk.chunk_id,
            chunk.version,
            index,
            ends[index] - chunk.length,
            chunk.length,
            chunk.sealed,
            tuple(chunk.replicas),
            file.chunk_size_bytes,
        )

    def locate(self, path: str, offset: int, length: int, *, allow_tail: bool = False) -> LocatedChunks:
        """The chunks holding bytes ``[offset, offset + length)`` of a file.

        Reading past the committed end is an InvalidArgumentError, except with ``allow_tail`` while the last
        chunk is still being written (``tail_open``): then the last chunk is included and the reader learns
        how far it may read from a replica's visible length.
        """
        file = self.tree.resolve_file("read", path)
        return self._locate(file, path, offset, length, allow_tail)

    def locate_file(self, file_id: int, offset: int, length: int, *, allow_tail: bool = False) -> LocatedChunks:
        file = self.tree.file("read", file_id)
        return self._locate(file, self.tree.path_of(file_id), offset, length, allow_tail)

    def _locate(self, file: FileNode, path: str, offset: int, length: int, allow_tail: bool) -> LocatedChunks:
        if offset < 0 or length < 0:
            raise InvalidArgumentError(f"read {path}: offset {offset} and length {length} must be >= 0", path=path)
        count = len(file.chunks)
        tail_open = count > 0 and not self.table.chunks[file.chunks[-1]].sealed
        end = offset + length
        if offset > file.length or (end > file.length and not (allow_tail and tail_open)):
            raise InvalidArgumentError(
                f"read {path}: bytes [{offset}, {end}) are past the end of the file (length {file.length})",
                path=path,
                offset=offset,
                file_length=file.length,
            )
        chunks: tuple[ChunkLocation, ...] = ()
        if length > 0:
            ends = self.chunk_ends(file)
            first = min(bisect.bisect_right(ends, offset), count - 1)
            last = min(bisect.bisect_left(ends, end), count - 1)
            chunks = tuple(self.location_at(file, i) for i in range(first, last + 1))
        return LocatedChunks(file.inode, file.length, chunks, tail_open)

    def plan_write(self, file_id: int, lease_id: int, offset: int, length: int, now_ns: int) -> WritePlan:
        """Map a write onto the file for the lease holder; clear errors for every bad write.

        Offsets are against the *committed* length: a writer commits what it wrote (CommitChunk) before it
        plans a write that starts past the committed end. Writes never leave a hole; log files and append
        leases write only at the end.
        """
        op = "write"
        file = self.tree.file(op, file_id)
        path = self.tree.path_of(file_id)
        lease = check_lease(op, path, file, lease_id, max(now_ns, self.clock_ns))
        if offset < 0 or length <= 0:
            raise InvalidArgumentError(f"{op} {path}: offset {offset} must be >= 0 and length {length} > 0")
        if offset > file.length:
            raise InvalidArgumentError(
                f"{op} {path}: offset {offset} is past the end of the file ({file.length}); writes never leave holes",
                path=path,
            )
        if (file.file_type is FileType.LOG or lease.mode is LeaseMode.APPEND) and offset != file.length:
            what = "log file" if file.file_type is FileType.LOG else "file opened for append"
            raise InvalidArgumentError(
                f"{op} {path}: a {what} is written only at its end ({file.length}), not at {offset}", path=path
            )
        touched: list[tuple[ChunkLocation, int, int]] = []
        pos, remaining = offset, length
        ends = self.chunk_ends(file)
        first = bisect.bisect_right(ends, offset)
        if first == len(ends) and ends and not self.table.chunks[file.chunks[-1]].sealed:
            first -= 1  # the end of an unsealed last chunk is where it grows
        for index in range(first, len(file.chunks)):
            if remaining == 0:
                break
            chunk = self.table.chunks[file.chunks[index]]
            start = ends[index] - chunk.length
            limit = chunk.length if chunk.sealed else file.chunk_size_bytes
            n = min(remaining, limit - (pos - start))
            if n > 0:
                touched.append((self.location_at(file, index), pos - start, n))
                pos += n
                remaining -= n
        new_chunks = -(-remaining // file.chunk_size_bytes)
        if len(file.chunks) + new_chunks > self.config.max_chunks_per_file:
            raise InvalidArgumentError(
                f"{op} {path}: {new_chunks} more chunks would exceed max_chunks_per_file "
                f"{self.config.max_chunks_per_file}"
            )
        bump = tuple(
            loc.chunk_id for loc, _, _ in touched if self.table.chunks[loc.chunk_id].writer_lease_id != lease_id
        )
        return WritePlan(file.inode, lease_id, tuple(touched), bump, new_chunks, remaining)

    # -- chunks and servers, for the leader ----------------------------------------------------------------------

    def chunk_location(self, chunk_id: int) -> ChunkLocation:
        chunk = self.table.chunk("locate chunk", chunk_id)
        file = self.tree.nodes[chunk.file_id]
        assert isinstance(file, FileNode)
        return self.location_at(file, chunk.index)

    def chunks_on(self, server_id: str) -> tuple[int, ...]:
        return tuple(sorted(self.table.by_server.get(server_id, ())))

    @property
    def next_chunk_id(self) -> int:
        """The smallest chunk id never allocated; the leader hands out ids from here (and above)."""
        return self.table.next_chunk_id

    def replication_of(self, chunk_id: int) -> int:
        file = self.tree.nodes[self.table.chunks[chunk_id].file_id]
        assert isinstance(file, FileNode)
        return file.replication

    def chunk_is_quiescent(self, chunk_id: int, now_ns: int) -> bool:
        """True when the chunk's bytes cannot change, so it may be copied (repair, balance, decommission).

        Not quiescent: an unsealed chunk of a file that has a lease (its writer — or lease recovery — decides
        its length first), and any chunk of a file under a random-write lease that is live or in its grace.
        """
        chunk = self.table.chunks[chunk_id]
        file = self.tree.nodes[chunk.file_id]
        assert isinstance(file, FileNode)
        lease = file.lease
        if lease is None:
            return True
        if not chunk.sealed:
            return False
        return not (lease.mode is LeaseMode.RANDOM and takeover_blocked(lease, now_ns, self.config))

    def expired_leases(self, now_ns: int) -> tuple[ExpiredLease, ...]:
        """Leases past expiry and grace, oldest first: the master recovers these files (docs/dfs.md)."""
        out = []
        for file_id in sorted(self.leased_files()):
            file = self.tree.nodes[file_id]
            assert isinstance(file, FileNode) and file.lease is not None
            if not takeover_blocked(file.lease, now_ns, self.config):
                lease = file.lease
                out.append(
                    ExpiredLease(file_id, lease.lease_id, lease.holder, self.tree.path_of(file_id), lease.expires_ns)
                )
        out.sort(key=lambda e: (e.expires_ns, e.file_id))
        return tuple(out)

    def leased_files(self) -> frozenset[int]:
        """Ids of the files that have a write lease (live or not)."""
        return frozenset(self._leased)

    def servers(self) -> tuple[ServerInfo, ...]:
        return tuple(self._server_info(self.table.servers[s]) for s in sorted(self.table.servers))

    def server(self, server_id: str) -> ServerInfo | None:
        record = self.table.servers.get(server_id)
        return None if record is None else self._server_info(record)

    @staticmethod
    def _server_info(record: ServerRecord) -> ServerInfo:
        return ServerInfo(
            record.server_id, record.address, record.rack, record.capacity_bytes, record.state, record.registered_ns
        )
