"""The metadata records a master keeps in memory, and the immutable views its reads return.

Records (``…Node``, :class:`ChunkRecord`, :class:`ServerRecord`, :class:`Lease`) are mutable and owned by the
state machine; a read never hands one out. Views (:class:`FileStatus`, :class:`ChunkLocation`, …) are frozen
copies, safe to send on the wire.
"""

from __future__ import annotations

import enum

import msgspec

__all__ = [
    "ChunkLocation",
    "ChunkRecord",
    "DirEntry",
    "DirNode",
    "FileNode",
    "FileStatus",
    "FileType",
    "Lease",
    "LeaseMode",
    "LocatedChunks",
    "NodeKind",
    "ServerInfo",
    "ServerRecord",
    "ServerState",
    "SpaceUsage",
    "WritePlan",
]

ROOT_INODE = 1


class FileType(enum.StrEnum):
    """``normal``: random writes and appends through a chain of replicas. ``log``: append-only, the client
    writes every replica in parallel with no master round trip per append (PANGU-8)."""

    NORMAL = "normal"
    LOG = "log"


class LeaseMode(enum.StrEnum):
    """``append``: writes only at the end of the file, so sealed chunks never change while the lease is held.
    ``random``: writes anywhere up to the end; chunks of the file are not copied (repair, balance) meanwhile."""

    APPEND = "append"
    RANDOM = "random"


class NodeKind(enum.StrEnum):
    DIR = "dir"
    FILE = "file"


class ServerState(enum.StrEnum):
    """The replicated part of a chunk server's state; liveness is the leader's soft state (cluster_state)."""

    ACTIVE = "active"
    DECOMMISSIONING = "decommissioning"  # gets no new replicas; its chunks migrate off, then it is decommissioned
    DECOMMISSIONED = "decommissioned"  # holds nothing and gets nothing until an operator recommissions it


class Lease(msgspec.Struct, array_like=True):
    """One writer's right to change a file. ``expires_ns`` is leader time written in the command, never read
    from a clock inside the state machine."""

    lease_id: int
    holder: str
    mode: LeaseMode
    acquired_ns: int
    expires_ns: int


class DirNode(msgspec.Struct, array_like=True):
    inode: int
    parent: int
    name: str
    children: dict[str, int]
    ctime_ns: int
    mtime_ns: int


class FileNode(msgspec.Struct, array_like=True):
    inode: int
    parent: int
    name: str
    file_type: FileType
    replication: int
    min_write_replicas: int  # a write pipeline may shrink to this many replicas before the writer must stop
    chunk_size_bytes: int
    chunks: list[int]  # chunk ids in file order; all but the last are sealed
    length: int  # sum of the committed chunk lengths
    ctime_ns: int
    mtime_ns: int
    lease: Lease | None = None


class ChunkRecord(msgspec.Struct, array_like=True):
    """One chunk. ``replicas`` are server ids, the first being the primary of the next write pipeline.

    ``version`` grows by one each time a write pipeline is (re)built or a new lease starts writing the chunk;
    a replica with a lower version is stale. ``writer_lease_id`` is the lease that set the current version.
    ``length`` is the committed (acknowledged and reported) length; replicas may hold more bytes that no one
    acknowledged, which are dropped when the chunk is sealed or its pipeline rebuilt.
    """

    chunk_id: int
    file_id: int
    index: int  # position in the file's chunk list (chunks are only ever appended)
    version: int
    replicas: list[str]
    length: int
    sealed: bool
    writer_lease_id: int


class ServerRecord(msgspec.Struct, array_like=True):
    server_id: str
    address: str
    rack: str
    capacity_bytes: int
    registered_ns: int
    state: ServerState = ServerState.ACTIVE


# -- views returned by reads ------------------------------------------------------------------------------------


class FileStatus(msgspec.Struct, frozen=True):
    path: str
    kind: NodeKind
    inode: int
    length: int = 0
    replication: int = 0
    min_write_replicas: int = 0
    file_type: FileType | None = None
    chunk_size_bytes: int = 0
    chunk_count: int = 0
    entries: int = 0  # directories: number of children
    ctime_ns: int = 0
    mtime_ns: int = 0
    lease_holder: str | None = None
    lease_mode: LeaseMode | None = None
    lease_expires_ns: int = 0


class DirEntry(msgspec.Struct, frozen=True):
    name: str
    kind: NodeKind
    inode: int
    length: int = 0


class SpaceUsage(msgspec.Struct, frozen=True):
    """What a file or a directory tree holds: ``bytes`` (file lengths) and ``replicated_bytes`` (each file's
    length times its replication factor: the disk space its replicas take once fully replicated)."""

    path: str
    kind: NodeKind
    files: int
    dirs: int
    bytes: int
    replicated_bytes: int


class ChunkLocation(msgspec.Struct, frozen=True):
    """Where one chunk of a file lives: ``file_offset`` is the file offset of the chunk's first byte."""

    chunk_id: int
    version: int
    index: int
    file_offset: int
    length: int
    sealed: bool
    replicas: tuple[str, ...]
    capacity_bytes: int


class LocatedChunks(msgspec.Struct, frozen=True):
    """The chunks covering a byte range. ``tail_open``: the last chunk is still being written, so replicas may
    hold acknowledged bytes past ``file_length`` (a reader tailing a log asks a replica for its visible length).
    """

    file_id: int
    file_length: int
    chunks: tuple[ChunkLocation, ...]
    tail_open: bool


class WritePlan(msgspec.Struct, frozen=True):
    """How a write of ``length`` bytes at ``offset`` maps onto a file: the existing chunks it touches (each
    with the chunk-relative range), which of them need a version bump before this lease may write them, and
    how many new chunks must be allocated (with :class:`AddChunk`) for the bytes past the last one."""

    file_id: int
    lease_id: int
    touched: tuple[tuple[ChunkLocation, int, int], ...]  # (chunk, chunk offset, byte count)
    bump_first: tuple[int, ...]  # chunk ids whose writer_lease_id is not this lease
    new_chunks: int
    bytes_in_new_chunks: int


class ServerInfo(msgspec.Struct, frozen=True):
    server_id: str
    address: str
    rack: str
    capacity_bytes: int
    state: ServerState
    registered_ns: int
