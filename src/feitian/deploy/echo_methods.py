"""The echo role's methods and the rules they declare (diagnostics, the demo, the benchmarks, the tests).

=============  ==================================  ==========================================================
method         rule (with security)                what it does
=============  ==================================  ==========================================================
echo.text      read on ``echo:/text``              string -> the same string
echo.map       read on ``echo:/map``               map -> the same map plus ``served_by``
echo.whoami    read on ``echo:/whoami``            string -> who the server says the caller is
echo.bytes     write on ``echo:/bytes``            typed :class:`EchoBytes`: like ``kuafu.Echo`` (benchmarks)
echo.relay     execute on ``echo:/relay``          map {target, method, text}: call ``method`` on ``target``
                                                   *as this node* (a service-to-service call) and return it
=============  ==================================  ==========================================================
"""

from __future__ import annotations

import os
from typing import Any, ClassVar

import msgspec

from feitian.errors import InvalidArgumentError, NotFoundError
from feitian.rpc import CallContext, Request
from feitian.security import MethodRule, Right, requires

__all__ = ["BYTES_RULE", "MAP_RULE", "RELAY_RULE", "TEXT_RULE", "WHOAMI_RULE", "EchoBytes", "add_echo_methods"]

TEXT_RULE: MethodRule[Any] = requires(Right.READ, "echo:/text")
MAP_RULE: MethodRule[Any] = requires(Right.READ, "echo:/map")
WHOAMI_RULE: MethodRule[Any] = requires(Right.READ, "echo:/whoami")
BYTES_RULE: MethodRule[Any] = requires(Right.WRITE, "echo:/bytes")
RELAY_RULE: MethodRule[Any] = requires(Right.EXECUTE, "echo:/relay")


class EchoBytes(Request[bytes], frozen=True, tag="echo.bytes", array_like=True):
    """The reply is ``data``, or with a payload the payload's length as 8 little-endian bytes."""

    idempotent: ClassVar[bool] = True

    data: bytes = b""


def add_echo_methods(node: Any) -> None:
    """Register echo.whoami, echo.bytes and echo.relay on ``node`` (a NodeContext)."""
    server = node.server

    async def whoami(ctx: CallContext, text: str) -> str:
        principal = ctx.peer.principal
        if principal is None:
            return f"{ctx.peer.name or '?'} (unauthenticated: this server runs without security)"
        return str(principal.describe())

    async def echo_bytes(ctx: CallContext, req: EchoBytes) -> bytes:
        if ctx.payload:
            return len(ctx.payload).to_bytes(8, "little")
        return req.data

    async def relay(ctx: CallContext, mapping: dict[str, str]) -> dict[str, str]:
        target = mapping.get("target", "")
        if not target:
            raise InvalidArgumentError("echo.relay: give target=ADDRESS or a node name of this cluster")
        address = target if "://" in target else _address_of(node.run_dir, target)
        reply = await node.client.call_text(address, mapping.get("method", "echo.text"), mapping.get("text", ""))
        return {"reply": reply, "relayed_by": node.name, "target": target}

    server.add_text_handler("echo.whoami", whoami, requires=WHOAMI_RULE)
    server.add_handler(EchoBytes, echo_bytes, requires=BYTES_RULE)
    server.add_map_handler("echo.relay", relay, requires=RELAY_RULE)


class _Endpoint(msgspec.Struct):
    addresses: list[str]


def _address_of(run_dir: str, name: str) -> str:
    path = os.path.join(run_dir or ".", f"{name}.json")
    try:
        with open(path, "rb") as f:
            return msgspec.json.decode(f.read(), type=_Endpoint).addresses[0]
    except (OSError, msgspec.MsgspecError, IndexError):
        raise NotFoundError(f"echo.relay: no serving node named {name!r} (no {path})") from None
