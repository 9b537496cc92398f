"""What clients and chunk servers say to a Pangu master (``dfs.*`` methods), and each method's rule.

Client methods name a path and need the Zhongkui right of :data:`feitian.dfs.core.OPERATION_RIGHTS` on
``dfs:<path>``; a path that is not a valid DFS path is refused (InvalidArgumentError) before anything else.
Methods working on an open file also carry its path, and the master checks that the file id is that path's.
Chunk servers need ``write`` on ``dfs-cluster:/servers``; cluster administration needs ``admin`` on ``dfs:/``.
"""

from __future__ import annotations

from typing import Any

import msgspec

from feitian.dfs.core import (
    ChunkLocation,
    DeleteResult,
    DirEntry,
    FileStatus,
    FileType,
    LeaseGrant,
    LeaseMode,
    MkdirResult,
    NamespaceConfig,
    RenameResult,
    ReplicaReport,
    SpaceUsage,
    WritePlan,
    file_resource,
)
from feitian.dfs.core.geometry import ChunkGeometry
from feitian.dfs.core.paths import join_path, split_path
from feitian.rpc import Request
from feitian.rpc.core import method_name
from feitian.security.core import MethodRule, Right, requires

__all__ = [
    "CLUSTER_RESOURCE",
    "AddChunkRequest",
    "AuthorizeCreate",
    "Balance",
    "BalanceReply",
    "ChunkGrant",
    "ChunkPlacement",
    "ChunkReport",
    "CloseRequest",
    "CommitRequest",
    "CreateRequest",
    "Decommission",
    "DeleteRequest",
    "DiskUsage",
    "DiskUsageReply",
    "Exists",
    "Fsck",
    "FsckReply",
    "Heartbeat",
    "HeartbeatReply",
    "ListRequest",
    "Locate",
    "LocateReply",
    "MasterStatus",
    "MasterStatusReply",
    "MkdirRequest",
    "OpenChunk",
    "OpenReply",
    "OpenWrite",
    "Placement",
    "PlacementReply",
    "PlanWriteRequest",
    "RecoverChunk",
    "ReleaseRequest",
    "RenameRequest",
    "RenewRequest",
    "ReplicaPlacement",
    "ReportCorrupt",
    "ServerAddress",
    "ServerStatus",
    "Servers",
    "SetReplicationRequest",
    "Stat",
    "Tokens",
    "WriteTokens",
]

CLUSTER_RESOURCE = "dfs-cluster:/servers"
_PATHS = NamespaceConfig()


def path_resource(path: str, op: str = "dfs") -> str:
    """``dfs:<path>`` for a well-formed path; InvalidArgumentError (a clear one, naming ``op``) otherwise."""
    return file_resource(join_path(split_path(op, path, _PATHS)))


def _rule(right: Right) -> MethodRule[Any]:
    def resource(req: Any) -> str:
        op = method_name(type(req)).rpartition(".")[2].lower()
        return path_resource(req.path, op)

    return requires(right, resource)


# -- shared parts ------------------------------------------------------------------------------------------------


class ServerAddress(msgspec.Struct, frozen=True, array_like=True):
    server_id: str
    address: str
    rack: str


class ChunkGrant(msgspec.Struct, frozen=True):
    """A chunk, where its replicas are, and tokens to use them.

    ``tokens[i]`` is for ``servers[i]``, to be presented by the caller; ``chain_tokens[i]`` (i >= 1) is for
    ``servers[i]`` to be presented by ``servers[i - 1]`` when it forwards a write down the pipeline. Tokens are
    empty in a cluster without security."""

    location: ChunkLocation
    geometry: ChunkGeometry
    servers: tuple[ServerAddress, ...]
    tokens: tuple[bytes, ...] = ()
    chain_tokens: tuple[bytes, ...] = ()


# -- namespace ---------------------------------------------------------------------------------------------------


class MkdirRequest(Request[MkdirResult], frozen=True, tag="dfs.Mkdir"):
    path: str
    parents: bool = True
    # Exactly-once retries: the client's id and this write's number (the kit's dedupe table); "" sends none.
    client_id: str = ""
    request_seq: int = 0


class Stat(Request[FileStatus], frozen=True, tag="dfs.Stat"):
    path: str
    idempotent = True


class Exists(Request[bool], frozen=True, tag="dfs.Exists"):
    path: str
    idempotent = True


class ListRequest(Request[tuple[DirEntry, ...]], frozen=True, tag="dfs.List"):
    path: str
    start_after: str = ""
    limit: int = 0
    idempotent = True


class AuthorizeCreate(Request[bytes], frozen=True, tag="dfs.AuthorizeCreate"):
    """The first half of a rename: proves the caller may create ``path`` (a rename needs ``delete`` on the
    source and ``create`` on the destination, and a method is checked for one right). Answers a nonce that
    :class:`RenameRequest` presents, valid for one rename by the same principal within a minute."""

    path: str


class RenameRequest(Request[RenameResult], frozen=True, tag="dfs.Rename"):
    path: str  # the source
    dst: str
    overwrite: bool = False
    create_nonce: bytes = b""
    # Exactly-once retries: the client's id and this write's number (the kit's dedupe table); "" sends none.
    client_id: str = ""
    request_seq: int = 0


class DeleteRequest(Request[DeleteResult], frozen=True, tag="dfs.Delete"):
    """``lease_id``: a writer removing the file it created and still holds the lease on (a failed upload)."""

    path: str
    recursive: bool = False
    lease_id: int = 0
    # Exactly-once retries: the client's id and this write's number (the kit's dedupe table); "" sends none.
    client_id: str = ""
    request_seq: int = 0


class SetReplicationRequest(Request[FileStatus], frozen=True, tag="dfs.SetReplication"):
    path: str
    replication: int
    # Exactly-once retries: the client's id and this write's number (the kit's dedupe table); "" sends none.
    client_id: str = ""
    request_seq: int = 0


class DiskUsageReply(msgspec.Struct, frozen=True):
    total: SpaceUsage
    entries: tuple[SpaceUsage, ...]  # a directory's entries, each with its whole subtree


class DiskUsage(Request[DiskUsageReply], frozen=True, tag="dfs.DiskUsage"):
    """Files, directories, bytes and replicated bytes under ``path`` (and under each entry of a directory)."""

    path: str
    idempotent = True


# -- writing -----------------------------------------------------------------------------------------------------


class OpenReply(msgspec.Struct, frozen=True):
    status: FileStatus
    file_id: int
    lease_id: int
    lease_expires_ns: int
    block_size_bytes: int
    last_chunk: ChunkLocation | None = None  # the file's last chunk (a writer continues after it)


class CreateRequest(Request[OpenReply], frozen=True, tag="dfs.Create"):
    """Create a file and open it for writing (a write lease for ``holder``)."""

    path: str
    holder: str
    file_type: FileType = FileType.NORMAL
    replication: int = 0
    chunk_size_bytes: int = 0
    min_write_replicas: int = 0
    overwrite: bool = False
    parents: bool = True
    mode: LeaseMode = LeaseMode.APPEND
    # Exactly-once retries: the client's id and this write's number (the kit's dedupe table); "" sends none.
    client_id: str = ""
    request_seq: int = 0


class OpenWrite(Request[OpenReply], frozen=True, tag="dfs.OpenWrite"):
    path: str
    holder: str
    mode: LeaseMode = LeaseMode.APPEND
    # Exactly-once retries: the client's id and this write's number (the kit's dedupe table); "" sends none.
    client_id: str = ""
    request_seq: int = 0


class RenewRequest(Request[LeaseGrant], frozen=True, tag="dfs.Renew"):
    path: str
    file_id: int
    lease_id: int


class CloseRequest(Request[int], frozen=True, tag="dfs.Close"):
    """Commit the last chunk's length (-1: as committed), seal it, release the lease; answers the file length."""

    path: str
    file_id: int
    lease_id: int
    last_chunk_length: int = -1
    # Exactly-once retries: the client's id and this write's number (the kit's dedupe table); "" sends none.
    client_id: str = ""
    request_seq: int = 0


class ReleaseRequest(Request[int], frozen=True, tag="dfs.Release"):
    """The writer gives up: the master seals the last chunk where its replicas agree (as lease recovery would,
    but now) and closes the file, releasing the lease; answers the file's length."""

    path: str
    file_id: int
    lease_id: int


class AddChunkRequest(Request[ChunkGrant], frozen=True, tag="dfs.AddChunk"):
    """A new last chunk (sealing the current one at ``previous_length`` if it is open); ``exclude``: servers
    that just failed for this writer."""

    path: str
    file_id: int
    lease_id: int
    after_chunk: int  # the file's last chunk as the writer knows it (0: none); makes a retry safe
    previous_length: int = -1
    exclude: tuple[str, ...] = ()


class CommitRequest(Request[ChunkLocation], frozen=True, tag="dfs.Commit"):
    path: str
    file_id: int
    lease_id: int
    chunk_id: int
    length: int
    seal: bool = False


class PlanWriteRequest(Request[WritePlan], frozen=True, tag="dfs.PlanWrite"):
    path: str
    file_id: int
    lease_id: int
    offset: int
    length: int


class OpenChunk(Request[ChunkGrant], frozen=True, tag="dfs.OpenChunk"):
    """Make this lease the chunk's writer (a random write into an existing chunk): a new version on its live
    replicas, synced; answers the grant for writing it."""

    path: str
    file_id: int
    lease_id: int
    chunk_id: int


class RecoverChunk(Request[ChunkGrant], frozen=True, tag="dfs.Recover"):
    """A write pipeline failed. The master asks the surviving replicas for their lengths, agrees on the
    smallest (never below ``acked_length``), and either seals the chunk there (``rebuild`` False: the writer
    continues on a new chunk) or rebuilds the pipeline with replacements copied from a survivor."""

    path: str
    file_id: int
    lease_id: int
    chunk_id: int
    version: int
    failed: tuple[str, ...]
    acked_length: int
    rebuild: bool = False


class Tokens(Request[ChunkGrant], frozen=True, tag="dfs.Tokens"):
    """Fresh read tokens for one chunk of ``path`` (after a chunk server refused an expired or unknown one)."""

    path: str
    chunk_id: int
    idempotent = True


class WriteTokens(Request[ChunkGrant], frozen=True, tag="dfs.WriteTokens"):
    """Fresh write tokens for a chunk the lease writes (expired with the old lease expiry, or lost with a
    connection)."""

    path: str
    file_id: int
    lease_id: int
    chunk_id: int


# -- reading -----------------------------------------------------------------------------------------------------


class LocateReply(msgspec.Struct, frozen=True):
    file_id: int
    file_length: int
    tail_open: bool
    chunks: tuple[ChunkGrant, ...]


class Locate(Request[LocateReply], frozen=True, tag="dfs.Locate"):
    path: str
    offset: int
    length: int
    allow_tail: bool = False
    idempotent = True


class ReplicaPlacement(msgspec.Struct, frozen=True):
    server_id: str
    rack: str
    state: str  # good, unconfirmed, stale, corrupt, lost, dead (the leader's view; docs/dfs.md)


class ChunkPlacement(msgspec.Struct, frozen=True):
    """One chunk of a file: where it starts, how long it is, and where its replicas are. ``racks``: racks its
    readable (good or unconfirmed) replicas are on; ``wanted_racks``: racks they could be on (replication, at most
    the racks with a live server in service)."""

    chunk_id: int
    index: int
    version: int
    file_offset: int
    length: int
    sealed: bool
    replicas: tuple[ReplicaPlacement, ...]
    racks: int
    wanted_racks: int


class PlacementReply(msgspec.Struct, frozen=True):
    status: FileStatus
    chunks: tuple[ChunkPlacement, ...]


class Placement(Request[PlacementReply], frozen=True, tag="dfs.Placement"):
    """Where a file's chunks and their replicas live (``feitian dfs locate``)."""

    path: str
    idempotent = True


class ReportCorrupt(Request[None], frozen=True, tag="dfs.ReportCorrupt"):
    """A reader found a checksum mismatch in ``server_id``'s replica of a chunk of ``path``."""

    path: str
    chunk_id: int
    server_id: str


# -- chunk servers -----------------------------------------------------------------------------------------------


class HeartbeatReply(msgspec.Struct, frozen=True):
    full_report: bool  # send a ChunkReport: this leader has none from you
    delete: tuple[int, ...] = ()  # replicas to delete (garbage)


class Heartbeat(Request[HeartbeatReply], frozen=True, tag="dfs.Heartbeat"):
    """Liveness, usage, and what changed since the last heartbeat the leader answered."""

    server_id: str
    address: str
    rack: str
    capacity_bytes: int
    used_bytes: int
    changed: tuple[ReplicaReport, ...] = ()
    deleted: tuple[int, ...] = ()
    corrupt: tuple[int, ...] = ()


class ChunkReport(Request[None], frozen=True, tag="dfs.ChunkReport"):
    server_id: str
    chunks: tuple[ReplicaReport, ...]


# -- administration ----------------------------------------------------------------------------------------------


class FsckReply(msgspec.Struct, frozen=True):
    healthy: bool
    chunks: int
    files: int
    missing: tuple[tuple[int, str], ...]
    corrupt: tuple[tuple[int, str], ...]
    under_replicated: tuple[tuple[int, int, int], ...]
    over_replicated: tuple[int, ...]
    stale: tuple[tuple[int, str], ...]
    dead_servers: tuple[str, ...]
    unconfirmed: int
    copies_in_flight: int
    misplaced: tuple[tuple[int, int, int], ...] = ()  # (chunk id, racks, racks wanted): see FsckReport


class Fsck(Request[FsckReply], frozen=True, tag="dfs.Fsck"):
    idempotent = True


class ServerStatus(msgspec.Struct, frozen=True):
    server_id: str
    address: str
    rack: str
    state: str
    live: bool
    capacity_bytes: int
    used_bytes: int
    chunks: int


class Servers(Request[tuple[ServerStatus, ...]], frozen=True, tag="dfs.Servers"):
    idempotent = True


class BalanceReply(msgspec.Struct, frozen=True):
    moves_started: int
    spread_before: float


class Balance(Request[BalanceReply], frozen=True, tag="dfs.Balance"):
    """Start balancing now and keep at it, round after round, until utilizations are within the threshold (the
    background balancer runs a round every ``balance_interval_s``)."""


class Decommission(Request[int], frozen=True, tag="dfs.Decommission"):
    """Stop placing chunks on ``server_id`` and migrate every chunk off it (it is then *decommissioned*: kept
    out, even when it heartbeats, until recommissioned); answers how many it holds. ``cancel``: recommission —
    put it back in service (decommissioning or decommissioned)."""

    server_id: str
    cancel: bool = False


class MasterStatusReply(msgspec.Struct, frozen=True):
    node: str
    role: str
    term: int
    leader: str
    applied_index: int
    files: int
    chunks: int
    servers: int


class MasterStatus(Request[MasterStatusReply], frozen=True, tag="dfs.MasterStatus"):
    idempotent = True


# -- rules -------------------------------------------------------------------------------------------------------

RULES: dict[type[Any], MethodRule[Any]] = {
    MkdirRequest: _rule(Right.CREATE),
    Stat: _rule(Right.READ),
    Exists: _rule(Right.READ),
    ListRequest: _rule(Right.LIST),
    AuthorizeCreate: _rule(Right.CREATE),
    RenameRequest: _rule(Right.DELETE),
    DeleteRequest: _rule(Right.DELETE),
    SetReplicationRequest: _rule(Right.ADMIN),
    DiskUsage: _rule(Right.LIST),
    ReleaseRequest: _rule(Right.WRITE),
    Placement: _rule(Right.READ),
    CreateRequest: _rule(Right.CREATE),
    OpenWrite: _rule(Right.WRITE),
    RenewRequest: _rule(Right.WRITE),
    CloseRequest: _rule(Right.WRITE),
    AddChunkRequest: _rule(Right.WRITE),
    CommitRequest: _rule(Right.WRITE),
    PlanWriteRequest: _rule(Right.WRITE),
    OpenChunk: _rule(Right.WRITE),
    RecoverChunk: _rule(Right.WRITE),
    Tokens: _rule(Right.READ),
    WriteTokens: _rule(Right.WRITE),
    Locate: _rule(Right.READ),
    ReportCorrupt: _rule(Right.READ),
    Heartbeat: requires(Right.WRITE, CLUSTER_RESOURCE),
    ChunkReport: requires(Right.WRITE, CLUSTER_RESOURCE),
    Fsck: requires(Right.ADMIN, "dfs:/"),
    Servers: requires(Right.READ, "dfs:/"),
    Balance: requires(Right.ADMIN, "dfs:/"),
    Decommission: requires(Right.ADMIN, "dfs:/"),
    MasterStatus: requires(Right.READ, "dfs:/"),
}
