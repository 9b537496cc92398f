"""The pure parts of the replicated-service kit: no asyncio, clock or I/O (tests/contract/test_purity.py)."""

from feitian.replica.core.dedupe import (
    ClientRecord,
    DedupeTable,
    ReplyCodec,
    RequestKey,
    StoredEntry,
    StoredReply,
    client_key,
    request_key,
)

__all__ = [
    "ClientRecord",
    "DedupeTable",
    "ReplyCodec",
    "RequestKey",
    "StoredEntry",
    "StoredReply",
    "client_key",
    "request_key",
]
