"""Typed Kuafu messages: the request base class, the handshake and the error reply.

A typed request is a frozen msgspec Struct that subclasses ``Request[ReplyType]`` and names its wire method with
an explicit tag (``component.Name``)::

    class Get(Request[GetReply], tag="coord.Get"):
        path: str

The tag is the method name in every REQUEST frame; the reply type comes from the generic parameter, so
``await client.call(addr, Get("/a"))`` is typed as returning ``GetReply``. Replies may be any type msgspec can
encode (a Struct, ``str``, ``dict[str, str]``, ``None``, ...).
"""

from __future__ import annotations

import typing
from typing import Any, ClassVar, Generic, Self, TypeVar

import msgspec

from feitian.errors import FeitianError, error_from_wire

R = TypeVar("R")


class Request(msgspec.Struct, Generic[R], frozen=True, tag=True):
    """Base of every typed request; ``R`` is the reply type.

    A request class that is safe to run twice sets ``idempotent: ClassVar[bool] = True``; clients then resend it
    when a connection breaks before its reply arrives.
    """

    idempotent: ClassVar[bool] = False


_REPLY_TYPES: dict[type[Any], Any] = {}


def method_name(request_type: type[Request[Any]]) -> str:
    tag = request_type.__struct_config__.tag
    if not isinstance(tag, str):
        raise TypeError(f"{request_type.__qualname__} needs an explicit string tag (the wire method name)")
    return tag


def reply_type(request_type: type[Request[Any]]) -> Any:
    """The ``R`` of ``Request[R]`` declared by a request class (cached)."""
    cached = _REPLY_TYPES.get(request_type)
    if cached is not None:
        return cached
    for klass in request_type.__mro__:
        for base in getattr(klass, "__orig_bases__", ()):
            if typing.get_origin(base) is Request:
                (arg,) = typing.get_args(base)
                result = type(None) if arg is None else arg
                _REPLY_TYPES[request_type] = result
                return result
    raise TypeError(f"{request_type.__qualname__} does not subclass Request[ReplyType]")


class Hello(msgspec.Struct, frozen=True, tag="kuafu.Hello"):
    """First frame of a connection (client -> server)."""

    protocol: int
    peer_name: str = ""
    target: str = ""  # set when talking to a per-machine proxy: the address to forward to
    max_body_bytes: int = 0
    max_payload_bytes: int = 0


class HelloAck(msgspec.Struct, frozen=True, tag="kuafu.HelloAck"):
    server_name: str
    version: str
    max_body_bytes: int
    max_payload_bytes: int


class ErrorInfo(msgspec.Struct, frozen=True, tag="kuafu.Error"):
    """A feitian error in wire form: the body of an ERROR frame, and (as ``feitian.coord``'s ``ErrorValue``, the
    same fields under another tag) a stored error result. The one wire form of an error.

    ``retryable`` says whether the sender's class may be retried, so a peer that does not know ``code`` (it is
    newer) still knows; absent (None) in frames from peers older than this field."""

    code: str
    message: str
    hint: str | None = None
    fields: dict[str, Any] = {}
    retryable: bool | None = None

    WIRE_FIELD_TYPES: ClassVar[tuple[type[Any], ...]] = (str, int, float, bool, type(None), list, dict)

    @classmethod
    def from_exception(cls, exc: FeitianError) -> Self:
        fields = {k: v for k, v in exc.fields.items() if isinstance(v, cls.WIRE_FIELD_TYPES)}
        return cls(code=exc.wire_code, message=exc.message, hint=exc.hint, fields=fields, retryable=exc.retryable)

    def to_exception(self) -> FeitianError:
        return error_from_wire(self.code, self.message, hint=self.hint, fields=self.fields, retryable=self.retryable)


# -- the standard methods every feitian server answers ---------------------------------------------------------


class HealthReply(msgspec.Struct, frozen=True):
    status: str  # "ok" or "degraded"
    server_name: str
    role: str
    version: str
    pid: int
    uptime_s: float
    detail: dict[str, str] = {}


class Health(Request[HealthReply], frozen=True, tag="kuafu.Health"):
    """Is this server alive and ready? Answered by every feitian server."""

    idempotent: ClassVar[bool] = True


class Echo(Request[bytes], frozen=True, tag="kuafu.Echo", array_like=True):
    """Diagnostics: the reply is ``data``; if the request carried a payload, the reply is its length as 8
    little-endian bytes instead (so bulk transfer can be measured without echoing megabytes back)."""

    idempotent: ClassVar[bool] = True

    data: bytes = b""


# -- credentials (answered by servers that run with security; see feitian.rpc.security) ------------------------


class PresentReply(msgspec.Struct, frozen=True):
    """A credential was verified and attached to the connection."""

    holder_id: str  # the principal the grant belongs to (the connection's)
    grant: str  # what it allows, for humans: "read,write on coord:/apps until ..."
    expires_ns: int  # wall-clock expiry of the grant


class PresentCapability(Request[PresentReply], frozen=True, tag="kuafu.PresentCapability"):
    """Attach a capability chain (``feitian.security.CapabilityChain`` bytes) held by the caller."""

    chain: bytes


class PresentToken(Request[PresentReply], frozen=True, tag="kuafu.PresentToken"):
    """Attach a token (``feitian.security.Token`` bytes) minted for this server; each is accepted once."""

    token: bytes
