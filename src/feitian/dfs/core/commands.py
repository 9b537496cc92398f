"""The commands of the master's replicated log: typed msgspec structs, a tagged union, msgpack on the wire.

Every value that needs a decision — a chunk id, the servers of a new chunk, a lease expiry, the time — is
decided by the leader *before* proposing and written into the command, so applying a command is a pure
function of the state and the command. ``now_ns`` is the leader's wall-clock time; the state machine keeps the
largest it has seen (``clock_ns``) so leader clocks that disagree a little never move its time backwards.

Each command's result (see :meth:`DfsStateMachine.apply`) is a frozen struct, or a :class:`FeitianError` value
when the command is refused — refused commands change nothing.
"""

from __future__ import annotations

import enum

import msgspec

from feitian.dfs.core.records import FileType, LeaseMode, ServerState
from feitian.errors import InvalidArgumentError
from feitian.replica.core import RequestKey

__all__ = [
    "AcquireLease",
    "AddChunk",
    "AddReplica",
    "BumpChunkVersion",
    "CloseFile",
    "Command",
    "CommitChunk",
    "Create",
    "CreateResult",
    "Delete",
    "DeleteResult",
    "LeaseGrant",
    "Mkdir",
    "MkdirResult",
    "RegisterServer",
    "RemovalReason",
    "RemoveReplica",
    "RemoveServer",
    "Rename",
    "RenameResult",
    "RenewLease",
    "SetReplication",
    "SetServerState",
    "decode_command",
    "encode_command",
]


class RemovalReason(enum.StrEnum):
    CORRUPT = "corrupt"  # failed its checksum (reported by a reader or the server's scrubber)
    STALE = "stale"  # reported with an older version than the chunk's
    LOST = "lost"  # the server reported its chunks and this one was not among them
    EXCESS = "excess"  # more replicas than the file's replication factor
    BALANCE = "balance"  # moved to a less utilized server
    DECOMMISSION = "decommission"  # moved off a server that is leaving
    DEAD = "dead"  # its server stopped heartbeating and the chunk was re-replicated elsewhere


# Reasons that move a healthy copy: refused when they would leave fewer replicas than the replication factor.
MOVE_REASONS = frozenset({RemovalReason.EXCESS, RemovalReason.BALANCE, RemovalReason.DECOMMISSION})


class _Command(msgspec.Struct, frozen=True, array_like=True, forbid_unknown_fields=True):
    pass


# -- namespace ---------------------------------------------------------------------------------------------------


class Mkdir(_Command, frozen=True, tag="dfs.mkdir"):
    path: str
    now_ns: int
    parents: bool = False  # create missing parents; an existing directory is then not an error
    request: RequestKey | None = None  # a client's write to apply once (the kit's dedupe table); None: no retries


class Create(_Command, frozen=True, tag="dfs.create"):
    """Create a file (0 for replication/chunk size/min_write_replicas means the configured default).

    ``overwrite``: replace an existing file (its chunks are freed) — refused if that file has a live lease held
    by someone else. With ``holder`` set, a write lease is granted atomically with the creation.
    """

    path: str
    now_ns: int
    file_type: FileType = FileType.NORMAL
    replication: int = 0
    chunk_size_bytes: int = 0
    min_write_replicas: int = 0  # 0: equal to replication (every replica, always)
    overwrite: bool = False
    parents: bool = False
    holder: str = ""
    lease_mode: LeaseMode = LeaseMode.APPEND
    lease_expires_ns: int = 0
    request: RequestKey | None = None  # a client's write to apply once (the kit's dedupe table); None: no retries


class Rename(_Command, frozen=True, tag="dfs.rename"):
    """Atomic rename of a file or a directory (with everything below it). ``overwrite`` replaces an existing
    destination *file*; a destination directory is never replaced."""

    src: str
    dst: str
    now_ns: int
    overwrite: bool = False
    request: RequestKey | None = None  # a client's write to apply once (the kit's dedupe table); None: no retries


class Delete(_Command, frozen=True, tag="dfs.delete"):
    """Delete a file or an empty directory; ``recursive`` deletes a whole subtree. Files with a live write lease
    are refused unless ``force``. ``lease_id``: a writer removing the file it holds that lease on (a failed
    upload taking back what it created) — refused unless the path is a file whose lease it still is."""

    path: str
    now_ns: int
    recursive: bool = False
    force: bool = False
    lease_id: int = 0
    request: RequestKey | None = None  # a client's write to apply once (the kit's dedupe table); None: no retries


class SetReplication(_Command, frozen=True, tag="dfs.set_replication"):
    path: str
    replication: int
    now_ns: int
    request: RequestKey | None = None  # a client's write to apply once (the kit's dedupe table); None: no retries


# -- write leases ------------------------------------------------------------------------------------------------


class AcquireLease(_Command, frozen=True, tag="dfs.acquire_lease"):
    """Open a file for writing. The same holder re-acquiring renews (and may change the mode: a new lease id)."""

    path: str
    holder: str
    mode: LeaseMode
    now_ns: int
    expires_ns: int
    request: RequestKey | None = None  # a client's write to apply once (the kit's dedupe table); None: no retries


class RenewLease(_Command, frozen=True, tag="dfs.renew_lease"):
    file_id: int
    lease_id: int
    now_ns: int
    expires_ns: int


class CloseFile(_Command, frozen=True, tag="dfs.close"):
    """Commit the last chunk's length (if ``last_chunk_length`` >= 0), optionally seal it, release the lease."""

    file_id: int
    lease_id: int
    now_ns: int
    last_chunk_length: int = -1
    seal_last: bool = False
    request: RequestKey | None = None  # a client's write to apply once (the kit's dedupe table); None: no retries


# -- chunks ------------------------------------------------------------------------------------------------------


class AddChunk(_Command, frozen=True, tag="dfs.add_chunk"):
    """Append a new chunk (id and servers chosen by the leader; ids are never reused) at version 1.

    If the current last chunk is not sealed, ``previous_length`` (>= 0) seals it at that length first.
    """

    file_id: int
    lease_id: int
    chunk_id: int
    replicas: tuple[str, ...]
    now_ns: int
    previous_length: int = -1


class CommitChunk(_Command, frozen=True, tag="dfs.commit_chunk"):
    """Record that ``length`` bytes of an unsealed chunk are on every replica; ``seal`` fixes its length."""

    file_id: int
    lease_id: int
    chunk_id: int
    length: int
    seal: bool
    now_ns: int


class BumpChunkVersion(_Command, frozen=True, tag="dfs.bump_version"):
    """A new write pipeline for a chunk: ``new_version`` = version + 1 with ``replicas`` (survivors, maybe a
    replacement that already holds the chunk's bytes). ``length`` >= 0 sets the agreed length (never below the
    committed one); ``seal`` seals it. Replicas left out are stale from now on."""

    file_id: int
    lease_id: int
    chunk_id: int
    new_version: int
    replicas: tuple[str, ...]
    now_ns: int
    length: int = -1
    seal: bool = False


class AddReplica(_Command, frozen=True, tag="dfs.add_replica"):
    """A copy of the chunk at ``version`` (``length`` bytes) now exists on ``server_id`` (repair, balance)."""

    chunk_id: int
    server_id: str
    version: int
    length: int
    now_ns: int


class RemoveReplica(_Command, frozen=True, tag="dfs.remove_replica"):
    chunk_id: int
    server_id: str
    reason: RemovalReason


# -- chunk servers -----------------------------------------------------------------------------------------------


class RegisterServer(_Command, frozen=True, tag="dfs.register_server"):
    """Add a chunk server (or update its address, rack and capacity). It can receive chunks at once."""

    server_id: str
    address: str
    rack: str
    capacity_bytes: int
    now_ns: int


class SetServerState(_Command, frozen=True, tag="dfs.set_server_state"):
    server_id: str
    state: ServerState


class RemoveServer(_Command, frozen=True, tag="dfs.remove_server"):
    """Forget a server. Refused while it holds replicas unless ``force`` (it is gone for good: its replicas are
    dropped from every chunk, which repair then re-replicates)."""

    server_id: str
    force: bool = False


Command = (
    Mkdir
    | Create
    | Rename
    | Delete
    | SetReplication
    | AcquireLease
    | RenewLease
    | CloseFile
    | AddChunk
    | CommitChunk
    | BumpChunkVersion
    | AddReplica
    | RemoveReplica
    | RegisterServer
    | SetServerState
    | RemoveServer
)

_ENCODER = msgspec.msgpack.Encoder()
_DECODER = msgspec.msgpack.Decoder(Command)


def encode_command(command: Command) -> bytes:
    return _ENCODER.encode(command)


def decode_command(data: bytes) -> Command:
    try:
        command: Command = _DECODER.decode(data)
    except (msgspec.DecodeError, msgspec.ValidationError) as exc:
        raise InvalidArgumentError(f"dfs command: cannot decode {len(data)} bytes: {exc}") from None
    return command


# -- results -----------------------------------------------------------------------------------------------------


class MkdirResult(msgspec.Struct, frozen=True):
    inode: int
    created: bool


class CreateResult(msgspec.Struct, frozen=True):
    file_id: int
    lease_id: int = 0  # 0: no lease requested
    lease_expires_ns: int = 0
    freed_chunks: int = 0  # chunks of a replaced file


class LeaseGrant(msgspec.Struct, frozen=True):
    file_id: int
    lease_id: int
    mode: LeaseMode
    expires_ns: int
    length: int


class RenameResult(msgspec.Struct, frozen=True):
    inode: int
    freed_chunks: int = 0


class DeleteResult(msgspec.Struct, frozen=True):
    files: int
    dirs: int
    freed_chunks: int
