"""What DFS access control needs from Zhongkui: resources, rights, and the claims of a chunk token.

**Files.** The master checks the caller's capability against ``dfs:<path>`` (a path prefix covers the subtree:
``dfs:/logs`` covers ``dfs:/logs/a``) with the rights in :data:`OPERATION_RIGHTS`; a rename needs ``delete`` on
the source and ``create`` on the destination.

**Chunks.** A chunk server accepts a request only with a token the master minted for that chunk (ZK-3,
:func:`feitian.security.mint_token`): audience = the chunk server's id, resource = :func:`chunk_resource`
(``dfs-chunk:<id>/v<version>``), rights ``read`` and/or ``write``, a short expiry — for writes never past the
writer's lease (:func:`token_expiry`), so a writer that lost its lease stops being able to write when its
tokens run out. The master mints one token per replica (each server is its own audience); the primary
forwards each downstream replica its own token. Zhongkui tokens are single-use per receiver (replay cache), so a
chunk server verifies a token once when a client opens a read or write stream for the chunk and the stream
rides on it until it expires.

After :func:`feitian.security.verify_token`, the chunk server turns the grant into :class:`ChunkTokenClaims`
(:func:`claims_from_grant`) and checks each request with :func:`check_chunk_access`. No cryptography here.
"""

from __future__ import annotations

import enum
import re
from collections.abc import Iterable

import msgspec

from feitian.dfs.core.leases import describe_time
from feitian.errors import AccessReason, InvalidArgumentError, PermissionDeniedError

__all__ = [
    "CHUNK_COMPONENT",
    "FILE_COMPONENT",
    "OPERATION_RIGHTS",
    "ChunkRight",
    "ChunkTokenClaims",
    "check_chunk_access",
    "chunk_resource",
    "claims_from_grant",
    "file_resource",
    "parse_chunk_resource",
    "token_expiry",
]

FILE_COMPONENT = "dfs"
CHUNK_COMPONENT = "dfs-chunk"
_CHUNK_RIGHTS = frozenset({"read", "write"})
_CHUNK_RESOURCE = re.compile(r"dfs-chunk:(\d{1,20})/v(\d{1,20})")

# Zhongkui right names (feitian.security.Right values) each master operation requires on dfs:<path>.
OPERATION_RIGHTS: dict[str, tuple[str, ...]] = {
    "stat": ("read",),
    "exists": ("read",),
    "read": ("read",),
    "locate": ("read",),
    "list": ("list",),
    "du": ("list",),
    "release": ("write",),
    "mkdir": ("create",),
    "create": ("create",),
    "open_write": ("write",),
    "write": ("write",),
    "append": ("write",),
    "delete": ("delete",),
    "rename_source": ("delete",),
    "rename_destination": ("create",),
    "set_replication": ("admin",),
    "fsck": ("admin",),
}


class ChunkRight(enum.StrEnum):
    READ = "read"
    WRITE = "write"


class ChunkTokenClaims(msgspec.Struct, frozen=True):
    """What a chunk token grants: ``rights`` on one version of one chunk, at one chunk server, until
    ``expires_ns`` (wall clock)."""

    chunk_id: int
    version: int
    rights: frozenset[ChunkRight]
    expires_ns: int
    server_id: str


def file_resource(path: str) -> str:
    return f"{FILE_COMPONENT}:{path}"


def chunk_resource(chunk_id: int, version: int) -> str:
    if chunk_id < 0 or version < 0:
        raise InvalidArgumentError(f"chunk resource: id {chunk_id} and version {version} must be >= 0")
    return f"{CHUNK_COMPONENT}:{chunk_id}/v{version}"


def parse_chunk_resource(text: str) -> tuple[int, int]:
    match = _CHUNK_RESOURCE.fullmatch(text)
    if match is None:
        raise InvalidArgumentError(f"chunk resource {text!r}: expected 'dfs-chunk:<id>/v<version>'")
    return int(match.group(1)), int(match.group(2))


def token_expiry(now_ns: int, ttl_ns: int, lease_expires_ns: int | None = None) -> int:
    """When a chunk token minted now should expire: after ``ttl_ns``, but a write token never outlives the
    writer's lease."""
    if ttl_ns <= 0:
        raise InvalidArgumentError(f"chunk token: ttl {ttl_ns} must be > 0")
    expires = now_ns + ttl_ns
    return expires if lease_expires_ns is None else min(expires, lease_expires_ns)


def claims_from_grant(
    resources: Iterable[str], rights: Iterable[str], expires_ns: int, server_id: str
) -> ChunkTokenClaims:
    """Claims from a verified token's grant (its resources as strings, its right names). Exactly one chunk."""
    chunks = {parse_chunk_resource(str(r)) for r in resources}
    if len(chunks) != 1:
        raise PermissionDeniedError(f"chunk token: names {len(chunks)} chunks, exactly one is required")
    chunk_id, version = chunks.pop()
    names = {str(r) for r in rights}
    if "admin" in names:
        granted = frozenset(ChunkRight)
    else:
        granted = frozenset(ChunkRight(n) for n in names if n in _CHUNK_RIGHTS)
    return ChunkTokenClaims(chunk_id, version, granted, expires_ns, server_id)


def check_chunk_access(
    claims: ChunkTokenClaims,
    *,
    server_id: str,
    chunk_id: int,
    version: int,
    right: ChunkRight,
    now_ns: int,
) -> None:
    """PermissionDeniedError unless ``claims`` allow ``right`` on ``chunk_id`` at ``version`` on this server now."""
    what = f"{right} chunk {chunk_id} v{version} on {server_id}"
    if claims.server_id != server_id:
        raise PermissionDeniedError(
            f"{what}: the token is for chunk server {claims.server_id!r}", reason=AccessReason.WRONG_SERVER
        )
    if claims.chunk_id != chunk_id or claims.version != version:
        raise PermissionDeniedError(
            f"{what}: the token is for chunk {claims.chunk_id} v{claims.version}",
            reason=AccessReason.WRONG_CHUNK,
            token_chunk_id=claims.chunk_id,
            token_version=claims.version,
        )
    if right not in claims.rights:
        raise PermissionDeniedError(
            f"{what}: the token grants only {sorted(str(r) for r in claims.rights)}", reason=AccessReason.MISSING_RIGHT
        )
    if now_ns >= claims.expires_ns:
        raise PermissionDeniedError(
            f"{what}: the token expired at {describe_time(claims.expires_ns, now_ns)}",
            reason=AccessReason.EXPIRED,
            expires_ns=claims.expires_ns,
        )
