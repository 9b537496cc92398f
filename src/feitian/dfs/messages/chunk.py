"""What clients, the master and chunk servers say to a chunk server (``chunk.*`` methods).

Bulk bytes travel as Kuafu payloads, never inside the message. Every method that touches a replica needs a
right on ``dfs-chunk:<id>/v<version>`` (:func:`feitian.dfs.core.chunk_resource`), which only a token minted by
the master for that server grants (docs/dfs.md, "Access control"); ``chunk.Copy`` and ``chunk.Status`` are
for the master and operators (``dfs-chunkserver:/``).
"""

from __future__ import annotations

from typing import Any

import msgspec

from feitian.dfs.core import chunk_resource
from feitian.dfs.core.geometry import ChunkGeometry
from feitian.rpc import Request
from feitian.security.core import MethodRule, Right, requires

__all__ = [
    "CHUNKSERVER_RESOURCE",
    "ChainLink",
    "ChunkInfo",
    "ChunkServerStats",
    "CommitThrough",
    "CopyChunk",
    "CopyReply",
    "GetChunkInfo",
    "GetStats",
    "PutChunk",
    "ReadChunk",
    "SyncChunk",
    "WriteChunk",
    "WriteReply",
]

CHUNKSERVER_RESOURCE = "dfs-chunkserver:/"


class ChainLink(msgspec.Struct, frozen=True, array_like=True):
    """A replica further down a write pipeline, with the token the master minted for it."""

    server_id: str
    address: str
    token: bytes = b""


class WriteReply(msgspec.Struct, frozen=True):
    length: int  # the chunk's length on the replica that answered (the first in the chain)
    duplicate: bool = False


class WriteChunk(Request[WriteReply], frozen=True, tag="chunk.Write"):
    """Write the payload at ``offset`` of the chunk (write ``seq`` of ``version``) and forward it down
    ``downstream``; answered when this replica and every one after it has it durably. ``commit_through``: every
    replica has bytes up to here (readers may see them)."""

    chunk: ChunkGeometry
    version: int
    seq: int
    offset: int
    commit_through: int = -1
    downstream: tuple[ChainLink, ...] = ()


class ReadChunk(Request[int], frozen=True, tag="chunk.Read"):
    """Bytes ``[offset, offset + length)``, verified, as the reply payload (the reply is their count).
    ``committed_length`` is the chunk's length the master committed (from ``locate``)."""

    chunk_id: int
    version: int
    offset: int
    length: int
    committed_length: int = 0

    idempotent = True


class ChunkInfo(msgspec.Struct, frozen=True):
    chunk_id: int
    version: int
    length: int
    readable_length: int
    sealed: bool
    corrupt: bool = False


class GetChunkInfo(Request[ChunkInfo], frozen=True, tag="chunk.Info"):
    """The replica's version, length and readable length (pipeline recovery, tailing readers)."""

    chunk_id: int
    version: int

    idempotent = True


class CommitThrough(Request[None], frozen=True, tag="chunk.Commit"):
    """Every replica has the chunk's bytes up to ``end``: readers tailing it may see them (log files send this
    after an append is acknowledged, so a record is visible at once rather than with the next append)."""

    chunk_id: int
    version: int
    end: int


class SyncChunk(Request[ChunkInfo], frozen=True, tag="chunk.Sync"):
    """Join the pipeline at ``version`` (a bump) keeping ``length`` bytes, or seal; durable on return. A server
    that never received a byte of the chunk creates it empty (``length`` 0), from ``chunk``."""

    chunk_id: int
    version: int
    length: int
    seal: bool = False
    chunk: ChunkGeometry | None = None


class PutChunk(Request[bool], frozen=True, tag="chunk.Put"):
    """One piece of a copy (the payload, whose crc32c is ``crc``); True once the whole replica is durable."""

    chunk: ChunkGeometry
    version: int
    offset: int
    crc: int
    total_length: int
    sealed: bool


class CopyReply(msgspec.Struct, frozen=True):
    bytes_copied: int
    seconds: float


class CopyChunk(Request[CopyReply], frozen=True, tag="chunk.Copy"):
    """(From the master.) Copy the first ``length`` bytes of this server's replica at ``version`` to ``target``,
    where they become a replica at ``target_version`` (the same version, except when a pipeline is rebuilt)."""

    chunk: ChunkGeometry
    version: int
    length: int
    sealed: bool
    target_id: str
    target_address: str
    target_token: bytes = b""
    target_version: int = 0  # 0: the same version


class ChunkServerStats(msgspec.Struct, frozen=True):
    server_id: str
    rack: str
    chunks: int
    used_bytes: int
    capacity_bytes: int
    corrupt: tuple[int, ...]
    scrubbed_bytes: int
    scrub_passes: int
    quarantined: tuple[str, ...]


class GetStats(Request[ChunkServerStats], frozen=True, tag="chunk.Stats"):
    idempotent = True


def _chunk_rule(right: Right, of: Any) -> MethodRule[Any]:
    return requires(right, lambda req: chunk_resource(*of(req)))


WRITE_RULE = _chunk_rule(Right.WRITE, lambda r: (r.chunk.chunk_id, r.version))
READ_RULE = _chunk_rule(Right.READ, lambda r: (r.chunk_id, r.version))
SYNC_RULE = _chunk_rule(Right.WRITE, lambda r: (r.chunk_id, r.version))
ADMIN_WRITE: MethodRule[Any] = requires(Right.WRITE, CHUNKSERVER_RESOURCE)
ADMIN_READ: MethodRule[Any] = requires(Right.READ, CHUNKSERVER_RESOURCE)
