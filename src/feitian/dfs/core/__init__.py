"""Pangu's pure core: the master's metadata state machine, placement, cluster soft state, chunk integrity.

No asyncio, sockets, clocks, randomness or file I/O: time is an argument (``now_ns``, wall-clock nanoseconds)
and randomness an injected :class:`feitian.base.clock.RandomSource`. The services built on it (master, chunk
server, client) are described in docs/dfs.md; this is their contract.

**Master (replicated).** :class:`DfsStateMachine` is the state machine the consensus driver replicates
(``Replica(config, DfsStateMachine(NamespaceConfig()), client)``). The leader decides every value and proposes
an encoded command (:func:`encode_command`): :class:`Mkdir`, :class:`Create`, :class:`Rename`,
:class:`Delete`, :class:`SetReplication`, :class:`AcquireLease`, :class:`RenewLease`, :class:`CloseFile`,
:class:`AddChunk`, :class:`CommitChunk`, :class:`BumpChunkVersion`, :class:`AddReplica`,
:class:`RemoveReplica`, :class:`RegisterServer`, :class:`SetServerState`, :class:`RemoveServer`. ``apply``
returns the result struct or a FeitianError value (nothing changed). Reads (after ``read_barrier()`` when they
must be linearizable): ``stat``, ``exists``, ``list_dir``, ``locate``/``locate_file``, ``plan_write``,
``chunk_location``, ``chunks_on``, ``servers``, ``expired_leases``, ``chunk_is_quiescent``, ``next_chunk_id``.

**Leader soft state.** :class:`ClusterState` takes heartbeats, chunk reports and corruption reports, and each
tick returns a :class:`MaintenancePlan` (RemoveReplica commands to propose, copies to start, garbage to delete,
servers done decommissioning) and an :meth:`ClusterState.fsck` report. Placement of new chunks:
:func:`choose_replicas` over :meth:`ClusterState.server_views`.

**Chunk servers.** :class:`ChunkReplica` is one replica's write-pipeline state (version, sequence, expected
offset, visible length, sealed, checksum table); :mod:`~feitian.dfs.core.chunk_format` computes and verifies
crc32c per block. :class:`ChunkTokenClaims` and :func:`check_chunk_access` are what a chunk token must say.

**Clients.** :func:`read_order` orders replicas for a read (local machine, then rack); :class:`WritePlan` (from
``plan_write``) maps a write onto chunks.
"""

from typing import TYPE_CHECKING

from feitian.base.lazy import lazy_attributes
from feitian.dfs.core.chunk_format import (
    BlockWrite,
    apply_block_write,
    block_checksums,
    decode_checksums,
    encode_checksums,
    plan_block_write,
    read_span,
    truncated_checksums,
    verified_slice,
    verify_blocks,
)
from feitian.dfs.core.chunk_replica import ChunkReplica, ReplicaRecord, WriteOutcome
from feitian.dfs.core.cluster_state import (
    ClusterConfig,
    ClusterState,
    FsckReport,
    MaintenancePlan,
    ReplicaReport,
    ReplicaState,
    Throttle,
)
from feitian.dfs.core.commands import (
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
    RemovalReason,
    RemoveReplica,
    RemoveServer,
    Rename,
    RenameResult,
    RenewLease,
    SetReplication,
    SetServerState,
    decode_command,
    encode_command,
)
from feitian.dfs.core.config import NamespaceConfig
from feitian.dfs.core.namespace import DfsStateMachine
from feitian.dfs.core.placement import (
    ChunkBrief,
    CopyReason,
    CopyTask,
    PlacementPolicy,
    RepairNeed,
    RepairPlan,
    ServerView,
    choose_replicas,
    plan_balance,
    plan_decommission,
    plan_repair,
    plan_spread,
    read_order,
    spread,
)
from feitian.dfs.core.reads import ExpiredLease
from feitian.dfs.core.records import (
    ChunkLocation,
    DirEntry,
    FileStatus,
    FileType,
    LeaseMode,
    LocatedChunks,
    NodeKind,
    ServerInfo,
    ServerState,
    SpaceUsage,
    WritePlan,
)
from feitian.dfs.core.tokens import (
    OPERATION_RIGHTS,
    ChunkRight,
    ChunkTokenClaims,
    check_chunk_access,
    chunk_resource,
    claims_from_grant,
    file_resource,
    parse_chunk_resource,
    token_expiry,
)

if TYPE_CHECKING:
    from feitian.dfs.core.chunk_table import ChunkTable
    from feitian.dfs.core.records import FileNode

# Exported on first use, for other components (they import only through this root: ARCHITECTURE.md, Layers).
_LAZY = {
    "ChunkTable": "feitian.dfs.core.chunk_table",
    "FileNode": "feitian.dfs.core.records",
}


__getattr__ = lazy_attributes(__name__, _LAZY)


__all__ = [
    "OPERATION_RIGHTS",
    "AcquireLease",
    "AddChunk",
    "AddReplica",
    "BlockWrite",
    "BumpChunkVersion",
    "ChunkBrief",
    "ChunkLocation",
    "ChunkReplica",
    "ChunkRight",
    "ChunkTable",
    "ChunkTokenClaims",
    "CloseFile",
    "ClusterConfig",
    "ClusterState",
    "Command",
    "CommitChunk",
    "CopyReason",
    "CopyTask",
    "Create",
    "CreateResult",
    "Delete",
    "DeleteResult",
    "DfsStateMachine",
    "DirEntry",
    "ExpiredLease",
    "FileNode",
    "FileStatus",
    "FileType",
    "FsckReport",
    "LeaseGrant",
    "LeaseMode",
    "LocatedChunks",
    "MaintenancePlan",
    "Mkdir",
    "MkdirResult",
    "NamespaceConfig",
    "NodeKind",
    "PlacementPolicy",
    "RegisterServer",
    "RemovalReason",
    "RemoveReplica",
    "RemoveServer",
    "Rename",
    "RenameResult",
    "RenewLease",
    "RepairNeed",
    "RepairPlan",
    "ReplicaRecord",
    "ReplicaReport",
    "ReplicaState",
    "ServerInfo",
    "ServerState",
    "ServerView",
    "SetReplication",
    "SetServerState",
    "SpaceUsage",
    "Throttle",
    "WriteOutcome",
    "WritePlan",
    "apply_block_write",
    "block_checksums",
    "check_chunk_access",
    "choose_replicas",
    "chunk_resource",
    "claims_from_grant",
    "decode_checksums",
    "decode_command",
    "encode_checksums",
    "encode_command",
    "file_resource",
    "parse_chunk_resource",
    "plan_balance",
    "plan_block_write",
    "plan_decommission",
    "plan_repair",
    "plan_spread",
    "read_order",
    "read_span",
    "spread",
    "token_expiry",
    "truncated_checksums",
    "verified_slice",
    "verify_blocks",
]
