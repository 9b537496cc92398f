"""Kuafu server: typed handlers, lanes, deadlines, cancellation, graceful shutdown.

Handlers are registered per request type::

    class EchoService:
        @handler(Echo, lane="fast")
        async def echo(self, ctx: CallContext, req: Echo) -> bytes:
            return req.data

    server = Server(ServerConfig(name="echo-1"))
    server.add_service(EchoService())
    addresses = await server.start(["tcp://127.0.0.1:0"])

A handler raising a :class:`~feitian.errors.FeitianError` sends that error to the caller, where it is raised as
the same class with the same fields. Any other exception is logged and sent as InternalError. Every server
answers ``kuafu.Health`` and ``kuafu.Echo`` in a reserved lane of its own.

Security (ZK-4): ``Server(config, security=...)`` (a :class:`~feitian.rpc.security.ServerSecurity`) serves
mutual TLS only, and each handler declares what it needs, checked before the request is queued::

    @handler(Get, requires=requires(Right.READ, lambda req: f"coord:{req.path}"))

A handler without a rule needs an authenticated peer only. Without ``security`` rules are ignored.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
from collections.abc import Awaitable, Callable
from typing import Any, NamedTuple, TypeVar

import msgspec

from feitian import __version__
from feitian.base.clock import Clock, MonotonicClock
from feitian.errors import (
    FeitianError,
    InternalError,
    InvalidArgumentError,
    NotFoundError,
    NotFoundReason,
    OverloadedError,
)
from feitian.rpc.config import LaneConfig, ServerConfig
from feitian.rpc.context import CallContext
from feitian.rpc.core.address import TcpAddress, UnixAddress, parse_endpoint
from feitian.rpc.core.frame import (
    FLAG_NO_REPLY,
    Frame,
    Kind,
    PayloadPool,
    encode_frame,
)
from feitian.rpc.core.messages import (
    Echo,
    Health,
    HealthReply,
    PresentCapability,
    PresentToken,
    Request,
    method_name,
)
from feitian.rpc.lanes import Lane
from feitian.rpc.security import ServerSecurity
from feitian.rpc.server_connection import CallJob, Inline, Method, ServerConnection
from feitian.rpc.tls import RAW_BUFFER_BYTES

log = logging.getLogger(__name__)

SYSTEM_LANE = "kuafu.system"
_SYSTEM_LANE_CONFIG = LaneConfig(max_concurrency=16, max_queue=1000, idle_workers=1)

F = TypeVar("F", bound=Callable[..., Awaitable[Any]])
R = TypeVar("R")

_encoder = msgspec.msgpack.Encoder()


class HandlerSpec(NamedTuple):
    request_type: type[Any]
    lane: str | None
    rule: Any = None


def handler(request_type: type[Request[Any]], *, lane: str | None = None, requires: Any = None) -> Callable[[F], F]:
    """Mark a method of a service object as the handler of ``request_type`` (see :meth:`Server.add_service`).

    ``requires`` is the method's rule (``feitian.security.requires(...)``), checked before the request is queued
    when the server runs with security; None means any authenticated peer.
    """

    def mark(fn: F) -> F:
        fn.__feitian_handler__ = HandlerSpec(request_type, lane, requires)  # type: ignore[attr-defined]
        return fn

    return mark


class Server:
    """A Kuafu server (see module docstring)."""

    def __init__(
        self,
        config: ServerConfig | None = None,
        *,
        health: Callable[[], tuple[str, dict[str, str]]] | None = None,
        security: ServerSecurity | None = None,
        clock: Clock | None = None,
    ) -> None:
        self.config = config or ServerConfig()
        # Uptime and the shutdown grace. Call deadlines stay on the event loop's clock: they are asyncio timeouts.
        self.clock = clock or MonotonicClock()
        self.config.validate()
        self._health = health
        self.security = security
        self.pool = PayloadPool()
        # One ciphertext receive buffer for every connection (see TlsSession): an idle connection costs no
        # buffer of its own.
        self.tls_raw = memoryview(bytearray(RAW_BUFFER_BYTES)) if security is not None else None
        self._lanes = {name: Lane(name, lane_cfg) for name, lane_cfg in self.config.lanes.items()}
        self._lanes[SYSTEM_LANE] = Lane(SYSTEM_LANE, _SYSTEM_LANE_CONFIG)
        self._methods: dict[bytes, Method] = {}
        self._caller_lanes: dict[str, str] = {}
        self._servers: list[asyncio.base_events.Server] = []
        self._connections: set[ServerConnection] = set()
        self._idle_waiters: list[asyncio.Future[None]] = []
        self.addresses: list[str] = []
        self._started_at_ns = self.clock.monotonic_ns()
        self._closing = False
        self.add_handler(Health, self._on_health, lane=SYSTEM_LANE)
        self.add_handler(Echo, self._on_echo, lane=SYSTEM_LANE)
        if security is not None:
            for present in (PresentCapability, PresentToken):
                self._add_method(method_name(present), present, _never, SYSTEM_LANE, None, ServerConnection.present)

    # -- registration ------------------------------------------------------------------------------------------

    def add_handler(
        self,
        request_type: type[Request[R]],
        fn: Callable[[CallContext, Any], Awaitable[R]],
        *,
        lane: str | None = None,
        requires: Any = None,
    ) -> None:
        """Serve ``request_type`` with ``fn``; ``requires`` is its security rule (None: authentication only)."""
        self._add_method(method_name(request_type), request_type, fn, lane, requires)

    def add_sync_handler(
        self,
        request_type: type[Request[R]],
        fn: Callable[[CallContext, Any], R],
        *,
        requires: Any = None,
    ) -> None:
        """Serve ``request_type`` with a plain (not async) function, run as soon as its frame is decoded: no task,
        no lane, no queue, in the order requests arrive on each connection. For cheap handlers that never wait
        (stepping a message into a state machine); ``ctx.deadline`` is not enforced. Security rules apply as for
        any handler."""
        self._add_method(method_name(request_type), request_type, _never, None, requires, sync=fn)

    def add_text_handler(
        self,
        name: str,
        fn: Callable[[CallContext, str], Awaitable[str]],
        *,
        lane: str | None = None,
        requires: Any = None,
    ) -> None:
        """A method whose request and reply are plain strings (the seed's string messages)."""
        self._add_method(name, str, fn, lane, requires)

    def add_map_handler(
        self,
        name: str,
        fn: Callable[[CallContext, dict[str, str]], Awaitable[dict[str, str]]],
        *,
        lane: str | None = None,
        requires: Any = None,
    ) -> None:
        """A method whose request and reply are string-to-string maps (the seed's map messages)."""
        self._add_method(name, dict[str, str], fn, lane, requires)

    def add_service(self, service: object) -> None:
        """Register every method of ``service`` marked with :func:`handler`."""
        found = False
        for attr in dir(type(service)):
            spec = getattr(getattr(type(service), attr, None), "__feitian_handler__", None)
            if isinstance(spec, HandlerSpec):
                self.add_handler(spec.request_type, getattr(service, attr), lane=spec.lane, requires=spec.rule)
                found = True
        if not found:
            raise InvalidArgumentError(f"{type(service).__name__} has no @handler methods")

    def route_caller(self, peer_name: str, lane: str) -> None:
        """Serve every request from peers that call themselves ``peer_name`` in ``lane``."""
        if lane not in self._lanes:
            raise InvalidArgumentError(f"route_caller: unknown lane {lane!r}")
        self._caller_lanes[peer_name] = lane

    def _add_method(
        self,
        name: str,
        rtype: Any,
        fn: Callable[[CallContext, Any], Awaitable[Any]],
        lane: str | None,
        rule: Any = None,
        inline: Inline | None = None,
        sync: Callable[[CallContext, Any], Any] | None = None,
    ) -> None:
        key = name.encode()
        if key in self._methods:
            raise InvalidArgumentError(f"method {name!r} is already registered")
        if len(key) > 255:
            raise InvalidArgumentError(f"method name {name!r} is longer than 255 bytes")
        lane_name = lane or self.config.default_lane
        if lane_name not in self._lanes:
            raise InvalidArgumentError(
                f"method {name!r}: unknown lane {lane_name!r}", hint=f"configured lanes: {sorted(self._lanes)}"
            )
        decoder = msgspec.msgpack.Decoder(rtype)
        self._methods[key] = Method(name, decoder, fn, self._lanes[lane_name], rule, inline, sync)

    # -- serving -----------------------------------------------------------------------------------------------

    async def start(self, addresses: list[str]) -> list[str]:
        """Listen on each address (``tcp://host:0`` picks a free port); returns the bound addresses."""
        loop = asyncio.get_running_loop()
        for text in addresses:
            addr = parse_endpoint(text)
            if isinstance(addr, TcpAddress):
                srv = await loop.create_server(
                    lambda: ServerConnection(self), addr.host, addr.port, reuse_address=True, backlog=1024
                )
                port = srv.sockets[0].getsockname()[1]
                self.addresses.append(str(TcpAddress(addr.host, port)))
            else:
                assert isinstance(addr, UnixAddress)
                if os.path.exists(addr.path):
                    os.unlink(addr.path)
                srv = await loop.create_unix_server(lambda: ServerConnection(self), addr.path, backlog=1024)
                self.addresses.append(str(addr))
            self._servers.append(srv)
        return list(self.addresses)

    async def stop(self, grace_s: float | None = None) -> None:
        """Stop accepting; tell clients to go away; let running calls finish for ``grace_s``; then close."""
        if self._closing:
            return
        self._closing = True
        grace = self.config.shutdown_grace_s if grace_s is None else grace_s
        for srv in self._servers:
            srv.close()
        for conn in list(self._connections):
            conn.send(encode_frame(Kind.GOAWAY, 0))
        clock = self.clock
        deadline_ns = clock.monotonic_ns() + int(grace * 1e9)
        while any(c.jobs for c in self._connections) and clock.monotonic_ns() < deadline_ns:
            waiter = asyncio.get_running_loop().create_future()
            self._idle_waiters.append(waiter)
            try:
                await asyncio.wait_for(waiter, max(0.0, (deadline_ns - clock.monotonic_ns()) / 1e9))
            except TimeoutError:
                break
        for lane in self._lanes.values():
            await lane.close()
        for conn in list(self._connections):
            conn.close()
        for srv in self._servers:
            await srv.wait_closed()
        for text in self.addresses:
            if text.startswith("unix://"):
                with contextlib.suppress(FileNotFoundError):
                    os.unlink(text[len("unix://") :])

    @property
    def connection_count(self) -> int:
        """Connections open now (accepted and not yet closed)."""
        return len(self._connections)

    def connection_opened(self, conn: ServerConnection) -> bool:
        if self._closing or len(self._connections) >= self.config.max_connections:
            conn.abort(
                "server is shutting down"
                if self._closing
                else f"too many connections (max_connections={self.config.max_connections})"
            )
            return False
        self._connections.add(conn)
        return True

    def connection_closed(self, conn: ServerConnection) -> None:
        self._connections.discard(conn)
        self.connection_idle(conn)

    def connection_idle(self, conn: ServerConnection) -> None:
        if self._idle_waiters:
            waiters, self._idle_waiters = self._idle_waiters, []
            for waiter in waiters:
                if not waiter.done():
                    waiter.set_result(None)

    def dispatch(self, conn: ServerConnection, frame: Frame) -> None:
        rid = frame.request_id
        reply = not frame.flags & FLAG_NO_REPLY
        method = self._methods.get(frame.name)
        if method is None:
            name = frame.name.decode("utf-8", "replace")
            error = NotFoundError(
                f"unknown method {name!r} on {self.config.name}", reason=NotFoundReason.UNKNOWN_METHOD, method=name
            )
            if not reply:
                log.warning("one-way message to unknown method %r from %s dropped", name, conn.peer_label())
            conn.answer_error(rid, error, reply, name)
            return
        if rid in conn.jobs:
            conn.abort(f"request id {rid} reused while still in flight")
            return
        try:
            request = method.decoder.decode(frame.body)
        except msgspec.MsgspecError as exc:
            if not reply:
                log.warning("malformed one-way %s from %s dropped: %s", method.name, conn.peer_label(), exc)
            conn.answer_error(rid, InvalidArgumentError(f"{method.name}: malformed request: {exc}"), reply, method.name)
            return
        security = self.security
        if security is not None:
            try:
                security.check(conn.auth, method.rule, request, method.name)  # refused calls never queue
                if method.inline is not None:
                    answer = _encoder.encode(method.inline(conn, request))
                    if reply:
                        conn.send_reply(rid, answer, None)
                    return
            except FeitianError as exc:
                conn.answer_error(rid, exc, reply, method.name)
                return
        deadline = conn.loop.time() + frame.aux / 1000 if frame.aux else None
        if method.sync is not None:
            self._run_sync(conn, method, rid, request, frame, deadline, reply)
            return
        size = len(frame.body) + len(frame.payload)
        job = CallJob(conn, rid, method, request, frame.payload, deadline, size, reply)
        lane = method.lane
        if self._caller_lanes:
            routed = self._caller_lanes.get(conn.peer.name)
            if routed is not None and lane.name != SYSTEM_LANE:
                lane = self._lanes[routed]
        try:
            lane.submit(job)
        except OverloadedError as exc:
            conn.answer_error(rid, exc, reply, method.name)
            return
        conn.job_started(job)

    @staticmethod
    def _run_sync(
        conn: ServerConnection,
        method: Method,
        rid: int,
        request: Any,
        frame: Frame,
        deadline: float | None,
        reply: bool,
    ) -> None:
        ctx = CallContext(method.name, rid, conn.peer, deadline, frame.payload)
        try:
            assert method.sync is not None
            result = method.sync(ctx, request)
            if reply:
                conn.send_reply(rid, _encoder.encode(result), ctx.reply_payload)
        except FeitianError as exc:
            conn.answer_error(rid, exc, reply, method.name)
        except Exception as exc:
            log.exception("handler of %s failed", method.name)
            error = InternalError(f"{method.name} failed: {type(exc).__name__}: {exc}")
            conn.answer_error(rid, error, reply, method.name)

    def lane_stats(self) -> dict[str, dict[str, int]]:
        return {
            name: {"queued": lane.queued, "active": lane.active, "completed": lane.completed, "rejected": lane.rejected}
            for name, lane in self._lanes.items()
        }

    # -- built-in methods --------------------------------------------------------------------------------------

    async def _on_health(self, ctx: CallContext, req: Health) -> HealthReply:
        status, detail = ("ok", {}) if self._health is None else self._health()
        return HealthReply(
            status,
            self.config.name,
            self.config.role,
            __version__,
            os.getpid(),
            round((self.clock.monotonic_ns() - self._started_at_ns) / 1e9, 3),
            detail,
        )

    async def _on_echo(self, ctx: CallContext, req: Echo) -> bytes:
        if ctx.payload:
            return len(ctx.payload).to_bytes(8, "little")
        return req.data


async def _never(ctx: CallContext, req: Any) -> Any:
    raise InternalError(f"{ctx.method} is answered inline")  # pragma: no cover - dispatch answers it
