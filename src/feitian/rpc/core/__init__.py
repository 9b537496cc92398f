"""Pure Kuafu protocol logic: framing, handshake messages, address parsing, endpoint selection. No I/O."""

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from feitian.rpc.core.messages import ErrorInfo, method_name

# Exported on first use, for other components (they import only through this root: ARCHITECTURE.md, Layers).
_LAZY = {
    "ErrorInfo": "feitian.rpc.core.messages",
    "method_name": "feitian.rpc.core.messages",
}


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module(module), name)


__all__ = ["ErrorInfo", "method_name"]
