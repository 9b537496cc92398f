"""The pure parts of the replicated-service kit: no asyncio, clock or I/O (tests/contract/test_purity.py)."""

from typing import TYPE_CHECKING

from feitian.base.lazy import lazy_attributes
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

if TYPE_CHECKING:
    from feitian.replica.core.dedupe import apply_once

# Exported on first use, for other components (they import only through this root: ARCHITECTURE.md, Layers).
_LAZY = {
    "apply_once": "feitian.replica.core.dedupe",
}


__getattr__ = lazy_attributes(__name__, _LAZY)


__all__ = [
    "ClientRecord",
    "DedupeTable",
    "ReplyCodec",
    "RequestKey",
    "StoredEntry",
    "StoredReply",
    "apply_once",
    "client_key",
    "request_key",
]
