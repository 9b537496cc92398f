"""The pure parts of the replicated-service kit: no asyncio, clock or I/O (tests/contract/test_purity.py)."""

import importlib
from typing import TYPE_CHECKING, Any

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


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module(module), name)


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
