"""Kuafu client: typed calls over pooled, multiplexed connections (KUAFU-1..6).

::

    async with Client(ClientConfig(name="tool")) as client:
        reply = await client.call("tcp://127.0.0.1:7000", Get("/a"), timeout=2.0)   # typed: GetReply
        handle = client.start("nuwa://local/Coord", Get("/b"))                     # returns at once
        ...
        reply_b = await handle

One connection per server is shared by every call to it; calls are told apart by request id. A call waits for
its connection (retrying with jittered back-off, up to ``connect_timeout_s``), carries its remaining deadline to
the server, and is cancelled on the server when the caller cancels it or its deadline passes. A connection that
breaks fails the calls in flight on it with ConnectionLostError (they may or may not have run); the next call
reconnects. Server errors are raised as the same FeitianError class with the same fields.

Security (ZK-4): ``Client(config, tls=..., credentials=...)`` connects with mutual TLS (a
:class:`~feitian.rpc.security.ClientTls`) and presents the capability chains of ``credentials`` on every new
connection before it carries calls, so reconnects keep their rights; :meth:`Client.refresh_credentials` presents
renewed chains on the connections already open, :meth:`Client.present_token` presents a token to one server.
A credential the server refuses fails the connection, and so the call, with the server's reason.
"""

from __future__ import annotations

import asyncio
import logging
import math
import random
from collections.abc import Generator
from typing import Any, Generic, TypeVar

import msgspec

from feitian.base.clock import Clock, MonotonicClock
from feitian.errors import (
    ConnectionLostError,
    DeadlineExceededError,
    FeitianError,
    InvalidArgumentError,
    MessageTooLargeError,
    UnavailableError,
)
from feitian.rpc.channel import Channel, ClientConnection, decode_error
from feitian.rpc.config import ClientConfig
from feitian.rpc.context import current_deadline
from feitian.rpc.core.address import NuwaAddress, parse_address
from feitian.rpc.core.balance import Backoff
from feitian.rpc.core.frame import Frame, Kind
from feitian.rpc.core.messages import (
    PresentCapability,
    PresentReply,
    PresentToken,
    Request,
    method_name,
    reply_type,
)
from feitian.rpc.resolver import Resolver, ServiceRoute
from feitian.rpc.security import ClientTls, Credentials
from feitian.rpc.stream import Buffer

log = logging.getLogger(__name__)

R = TypeVar("R")

_MAX_TIMEOUT_MS = (1 << 32) - 1
_encoder = msgspec.msgpack.Encoder()

__all__ = ["Call", "Channel", "Client", "ClientConnection", "Reply"]


class Reply(Generic[R]):
    """A reply with its raw payload (``b""`` if the server sent none)."""

    __slots__ = ("payload", "value")

    def __init__(self, value: R, payload: bytes | bytearray) -> None:
        self.value = value
        self.payload = payload


class _MethodInfo:
    __slots__ = ("decoder", "idempotent", "name", "text")

    def __init__(self, name: str, reply: Any, idempotent: bool = False) -> None:
        self.text = name
        self.name = name.encode()
        self.decoder = msgspec.msgpack.Decoder(reply)
        self.idempotent = idempotent


class Call(Generic[R]):
    """A call started with :meth:`Client.start`: await it, or poll :meth:`done` and collect :meth:`result`."""

    def __init__(self, task: asyncio.Task[Reply[R]]) -> None:
        self._task = task

    def done(self) -> bool:
        return self._task.done()

    def result(self) -> R:
        """The reply (raises the call's error); InvalidArgumentError if the call has not finished."""
        if not self._task.done():
            raise InvalidArgumentError("call has not finished yet", hint="await it, or check done() first")
        return self._task.result().value

    def reply(self) -> Reply[R]:
        if not self._task.done():
            raise InvalidArgumentError("call has not finished yet", hint="await it, or check done() first")
        return self._task.result()

    def cancel(self) -> None:
        """Cancel the call; the server is told to stop working on it."""
        self._task.cancel()

    def __await__(self) -> Generator[Any, None, R]:
        reply = yield from self._task.__await__()
        return reply.value


class Client:
    """An asyncio Kuafu client (see module docstring). Use one per program; it is cheap to share."""

    def __init__(
        self,
        config: ClientConfig | None = None,
        *,
        resolver: Resolver | None = None,
        rng: random.Random | None = None,
        tls: ClientTls | None = None,
        credentials: Credentials | None = None,
        clock: Clock | None = None,
    ) -> None:
        self.config = config or ClientConfig()
        self.config.validate()
        if tls is not None and self.config.proxy_path is not None:
            raise InvalidArgumentError(
                "a client with TLS cannot use the per-machine proxy: the proxy would forward its calls under the "
                "proxy's own identity",
                hint="call servers directly (drop proxy_path / --proxy); see docs/security.md",
            )
        if credentials is not None and tls is None:
            raise InvalidArgumentError("credentials need tls: capabilities are presented on authenticated connections")
        self.tls = tls
        self.credentials = credentials
        self.resolver = resolver
        self.rng = rng or random.Random()
        # Connect retries and endpoint health. Call deadlines and keepalives stay on the event loop's clock:
        # they are asyncio timeouts and protocol timers (ARCHITECTURE.md, Invariants).
        self.clock = clock or MonotonicClock()
        self.backoff = Backoff(self.config.backoff_base_s, self.config.backoff_max_s)
        self._channels: dict[str, Channel] = {}
        self._routes: dict[str, ServiceRoute] = {}
        self._methods: dict[Any, _MethodInfo] = {}
        self._closed = False

    async def __aenter__(self) -> Client:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    async def close(self) -> None:
        self._closed = True
        for route in self._routes.values():
            route.close()
        for channel in self._channels.values():
            channel.close()
        self._channels.clear()
        self._routes.clear()

    # -- the API -----------------------------------------------------------------------------------------------

    async def call(
        self,
        address: str,
        request: Request[R],
        *,
        timeout: float | None = None,
        payload: Buffer | None = None,
        idempotent: bool | None = None,
    ) -> R:
        """Send ``request`` and return its typed reply.

        ``timeout`` is in seconds; ``payload`` is raw bulk data sent after the message. ``idempotent`` (default:
        the request class's ``idempotent`` attribute) lets the client send the call again, up to
        ``idempotent_retries`` times, if its connection breaks before the reply.
        """
        info, frame = await self._typed(address, request, timeout, payload, idempotent)
        value: R = info.decoder.decode(frame.body)
        return value

    async def call_full(
        self,
        address: str,
        request: Request[R],
        *,
        timeout: float | None = None,
        payload: Buffer | None = None,
        idempotent: bool | None = None,
    ) -> Reply[R]:
        """Like :meth:`call`, also returning the raw payload of the reply."""
        info, frame = await self._typed(address, request, timeout, payload, idempotent)
        return Reply(info.decoder.decode(frame.body), frame.payload)

    async def _typed(
        self,
        address: str,
        request: Request[Any],
        timeout: float | None,
        payload: Buffer | None,
        idempotent: bool | None,
    ) -> tuple[_MethodInfo, Frame]:
        info = self._methods.get(type(request))
        if info is None:
            info = self._method_info(type(request))
        retry = info.idempotent if idempotent is None else idempotent
        return info, await self._invoke(address, info, _encoder.encode(request), payload, timeout, retry)

    def start(
        self,
        address: str,
        request: Request[R],
        *,
        timeout: float | None = None,
        payload: Buffer | None = None,
        idempotent: bool | None = None,
    ) -> Call[R]:
        """Start a call and return at once (KUAFU-3 asynchronous call); collect the result later."""
        coro = self.call_full(address, request, timeout=timeout, payload=payload, idempotent=idempotent)
        return Call(asyncio.get_running_loop().create_task(coro))

    async def post(self, address: str, request: Request[Any], *, timeout: float | None = None) -> None:
        """Send ``request`` one way: the server runs its handler and answers nothing, not even an error.

        Returns once the message is queued on the connection (after connecting and waiting for flow control, for
        at most ``timeout``; the handler itself runs without a deadline); whether it arrives or runs is not
        reported: a connection that breaks loses what it
        had not yet delivered. For messages whose loss the protocol above tolerates (consensus traffic).
        ``address`` is a ``tcp://`` or ``unix://`` server (not ``nuwa://``).
        """
        if self._closed:
            raise InvalidArgumentError("client is closed")
        if address.startswith("nuwa://"):
            raise InvalidArgumentError(f"post {address}: one-way messages go to a server address, not nuwa://")
        info = self._methods.get(type(request)) or self._method_info(type(request))
        body = _encoder.encode(request)
        self._check_size(info, body, None)
        loop = asyncio.get_running_loop()
        wait = self.config.default_timeout_s if timeout is None else timeout
        deadline = None if wait is None else loop.time() + wait
        conn = await self._channel(address).connection(deadline)
        if conn.write_paused:
            await self._bounded(conn.wait_writable(), deadline, info)
        if conn.closed:
            raise ConnectionLostError(f"{info.text}: connection to {conn.peer_label()} lost")
        conn.post_request(info.name, body, 0)

    def try_post(self, address: str, request: Request[Any]) -> bool:
        """Like :meth:`post` without waiting: sent (True) only if a connection to ``address`` is open and
        accepting writes now; otherwise nothing is sent (False) and the caller may ``await post(...)``."""
        channel = self._channels.get(address)
        conn = None if channel is None else channel.conn
        if conn is None or not conn.usable or conn.write_paused or self._closed:
            return False
        info = self._methods.get(type(request)) or self._method_info(type(request))
        body = _encoder.encode(request)
        self._check_size(info, body, None)
        conn.post_request(info.name, body, 0)
        return True

    async def call_text(
        self, address: str, method: str, text: str, *, timeout: float | None = None, idempotent: bool = False
    ) -> str:
        """Call a method whose request and reply are strings."""
        info = self._methods.get(("text", method)) or self._untyped_info("text", method, str)
        frame = await self._invoke(address, info, _encoder.encode(text), None, timeout, idempotent)
        result: str = info.decoder.decode(frame.body)
        return result

    async def call_map(
        self,
        address: str,
        method: str,
        mapping: dict[str, str],
        *,
        timeout: float | None = None,
        idempotent: bool = False,
    ) -> dict[str, str]:
        """Call a method whose request and reply are string-to-string maps."""
        info = self._methods.get(("map", method)) or self._untyped_info("map", method, dict[str, str])
        frame = await self._invoke(address, info, _encoder.encode(mapping), None, timeout, idempotent)
        result: dict[str, str] = info.decoder.decode(frame.body)
        return result

    # -- credentials (ZK-2, ZK-3) --------------------------------------------------------------------------------

    async def present_token(self, address: str, token: bytes, *, timeout: float | None = None) -> PresentReply:
        """Present a token (bytes of ``feitian.security.Token``) on the connection to ``address``.

        The token is attached to that connection only (a token is accepted once: it is not presented again after
        a reconnect; mint a new one).
        """
        return await self.call(address, PresentToken(token), timeout=timeout)

    async def present_capability(self, address: str, chain: bytes, *, timeout: float | None = None) -> PresentReply:
        """Present one capability chain on the connection to ``address`` (see also ``credentials``)."""
        return await self.call(address, PresentCapability(chain), timeout=timeout)

    async def refresh_credentials(self) -> None:
        """Present the current ``credentials`` on every open connection (after renewing them).

        Connections whose presentation is refused are closed, so their next call reconnects and reports why.
        """
        if self.credentials is None:
            return
        chains = self.credentials.capabilities()
        conns = [c.conn for c in self._channels.values() if c.conn is not None and c.conn.usable]
        results = await asyncio.gather(*(conn.present_capabilities(chains) for conn in conns), return_exceptions=True)
        for conn, result in zip(conns, results, strict=True):
            if isinstance(result, FeitianError):
                log.warning("renewed credentials refused by %s: %s", conn.endpoint, result)
                conn.close()

    # -- internals ---------------------------------------------------------------------------------------------

    def _method_info(self, request_type: type[Request[Any]]) -> _MethodInfo:
        info = _MethodInfo(method_name(request_type), reply_type(request_type), request_type.idempotent)
        self._methods[request_type] = info
        return info

    def _untyped_info(self, kind: str, method: str, rtype: Any) -> _MethodInfo:
        if not method or len(method.encode()) > 255:
            raise InvalidArgumentError(f"method name {method!r} must be 1..255 bytes")
        info = _MethodInfo(method, rtype)
        self._methods[(kind, method)] = info
        return info

    async def _invoke(
        self,
        address: str,
        info: _MethodInfo,
        body: bytes,
        payload: Buffer | None,
        timeout: float | None,
        idempotent: bool,
    ) -> Frame:
        if self._closed:
            raise InvalidArgumentError("client is closed")
        loop = asyncio.get_running_loop()
        if timeout is None:
            timeout = self.config.default_timeout_s
        deadline = None if timeout is None else loop.time() + timeout
        inherited = current_deadline.get()
        if inherited is not None and (deadline is None or inherited < deadline):
            deadline = inherited
        size = len(body) + (len(payload) if payload else 0)
        self._check_size(info, body, payload)

        retries = 0
        while True:
            try:
                frame = await self._route(address, info, body, payload, deadline, size)
                break
            except ConnectionLostError:
                # The call may or may not have run; only idempotent calls are sent again.
                retries += 1
                if (
                    not idempotent
                    or retries > self.config.idempotent_retries
                    or (deadline is not None and loop.time() >= deadline)
                ):
                    raise
        if frame.kind == Kind.REPLY:
            return frame
        raise decode_error(frame.body)

    async def _route(
        self, address: str, info: _MethodInfo, body: bytes, payload: Buffer | None, deadline: float | None, size: int
    ) -> Frame:
        channel = self._channels.get(address)
        if channel is not None:
            conn = channel.conn
            if conn is None or not conn.usable:
                conn = await channel.connection(deadline)
            return await self._send(conn, info, body, payload, deadline, size)
        if address.startswith("nuwa://"):
            return await self._invoke_service(address, info, body, payload, deadline, size)
        channel = self._channel(address)
        return await self._send(await channel.connection(deadline), info, body, payload, deadline, size)

    def _check_size(self, info: _MethodInfo, body: bytes, payload: Buffer | None) -> None:
        limits = self.config.limits
        if len(body) > limits.max_body_bytes:
            raise MessageTooLargeError(
                f"{info.text}: request body of {len(body)} bytes exceeds max_body_bytes={limits.max_body_bytes}",
                limit=limits.max_body_bytes,
                size=len(body),
            )
        if payload and len(payload) > limits.max_payload_bytes:
            raise MessageTooLargeError(
                f"{info.text}: payload of {len(payload)} bytes exceeds max_payload_bytes={limits.max_payload_bytes}",
                limit=limits.max_payload_bytes,
                size=len(payload),
            )

    def _channel(self, endpoint: str) -> Channel:
        channel = self._channels.get(endpoint)
        if channel is None:
            channel = Channel(self, endpoint)  # parses: raises InvalidArgumentError on a bad address
            self._channels[endpoint] = channel
        return channel

    async def _invoke_service(
        self,
        address: str,
        info: _MethodInfo,
        body: bytes,
        payload: Buffer | None,
        deadline: float | None,
        size: int,
    ) -> Frame:
        route = self._routes.get(address)
        if route is None:
            parsed = parse_address(address)
            assert isinstance(parsed, NuwaAddress)
            if self.resolver is None:
                raise InvalidArgumentError(
                    f"{address}: this client has no resolver for nuwa:// addresses",
                    hint="create the Client with resolver=...",
                )
            route = self._routes[address] = ServiceRoute(parsed, self.resolver, self.clock)
        loop = asyncio.get_running_loop()
        while True:
            endpoint = await route.pick()
            channel = self._channel(endpoint)
            try:
                conn = await channel.connection(deadline)
            except UnavailableError:
                # Nothing was sent: safe to try another server while the deadline lasts.
                route.report_failure(endpoint)
                if deadline is not None and loop.time() >= deadline:
                    raise
                continue
            route.report_success(endpoint)
            try:
                return await self._send(conn, info, body, payload, deadline, size)
            except ConnectionLostError:
                route.report_failure(endpoint)
                raise

    async def _send(
        self,
        conn: ClientConnection,
        info: _MethodInfo,
        body: bytes,
        payload: Buffer | None,
        deadline: float | None,
        size: int,
    ) -> Frame:
        if conn.inflight_bytes and conn.inflight_bytes + size > self.config.max_inflight_bytes:
            await self._bounded(conn.wait_for_room(size), deadline, info)
        if conn.write_paused:
            await self._bounded(conn.wait_writable(), deadline, info)
        if conn.closed:
            raise ConnectionLostError(f"{info.text}: connection to {conn.peer_label()} lost")
        loop = conn.loop
        timeout_ms = 0
        timer = None
        if deadline is not None:
            remaining = deadline - loop.time()
            if remaining <= 0:
                raise DeadlineExceededError(f"{info.text}: deadline exceeded before the call was sent")
            timeout_ms = min(_MAX_TIMEOUT_MS, max(1, math.ceil(remaining * 1000)))
        rid, future = conn.send_request(info.name, body, payload, timeout_ms, size)
        if deadline is not None:
            timer = loop.call_at(deadline, _expire, conn, rid, future, info.text)
        try:
            return await future
        except asyncio.CancelledError:
            conn.cancel_request(rid)
            raise
        finally:
            if timer is not None:
                timer.cancel()

    @staticmethod
    async def _bounded(waiting: Any, deadline: float | None, info: _MethodInfo) -> None:
        if deadline is None:
            await waiting
            return
        try:
            await asyncio.wait_for(waiting, max(0.0, deadline - asyncio.get_running_loop().time()))
        except TimeoutError:
            raise DeadlineExceededError(f"{info.text}: deadline exceeded waiting for flow control") from None


def _expire(conn: ClientConnection, rid: int, future: asyncio.Future[Frame], method: str) -> None:
    if not future.done():
        conn.cancel_request(rid)
        future.set_exception(DeadlineExceededError(f"{method}: deadline exceeded waiting for the reply"))
