"""Pure Kuafu protocol logic: framing, handshake messages, address parsing, endpoint selection. No I/O."""

from typing import TYPE_CHECKING

from feitian.base.lazy import lazy_attributes

if TYPE_CHECKING:
    from feitian.rpc.core.messages import ErrorInfo, method_name

# Exported on first use, for other components (they import only through this root: ARCHITECTURE.md, Layers).
_LAZY = {
    "ErrorInfo": "feitian.rpc.core.messages",
    "method_name": "feitian.rpc.core.messages",
}


__getattr__ = lazy_attributes(__name__, _LAZY)


__all__ = ["ErrorInfo", "method_name"]
