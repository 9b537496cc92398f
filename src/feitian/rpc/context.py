"""The context of one server-side call, and deadline propagation across hops.

While a handler runs, the call's deadline is the *current deadline* of its task: any Kuafu call the handler
makes without an explicit, earlier timeout inherits what is left of it, so a deadline set by the first caller
bounds the whole chain of calls it causes.
"""

from __future__ import annotations

import contextvars
from typing import Any

Buffer = bytes | bytearray | memoryview

# Deadline of the server call being handled, in event-loop time (loop.time() seconds); None = no deadline.
current_deadline: contextvars.ContextVar[float | None] = contextvars.ContextVar("feitian_rpc_deadline", default=None)


class PeerInfo:
    """Who is on the other end of a connection."""

    __slots__ = ("address", "name", "pid", "principal")

    def __init__(self, address: str, name: str, principal: Any = None, pid: int = 0) -> None:
        self.address = address  # "host:port" or "unix"
        self.name = name  # the name the peer gave in its Hello (not authenticated)
        self.principal = principal  # the authenticated identity, when security is on
        self.pid = pid  # on a Unix socket: the peer's process id, as the kernel reports it (SO_PEERCRED); else 0

    def __repr__(self) -> str:
        return f"PeerInfo({self.address!r}, {self.name!r})"


class CallContext:
    """What a handler knows about the call besides the request: peer, deadline, bulk payload."""

    __slots__ = ("deadline", "method", "payload", "peer", "reply_payload", "request_id")

    def __init__(self, method: str, request_id: int, peer: PeerInfo, deadline: float | None, payload: Buffer) -> None:
        self.method = method
        self.request_id = request_id
        self.peer = peer
        self.deadline = deadline  # loop.time() seconds, or None
        self.payload = payload  # the request's raw payload (b"" if none)
        self.reply_payload: Buffer | None = None  # set by the handler to send a raw payload with the reply
