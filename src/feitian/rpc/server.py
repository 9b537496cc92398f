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
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import sys
import time
from collections.abc import Awaitable, Callable
from typing import Any, NamedTuple, TypeVar

import msgspec

from feitian import __version__
from feitian.errors import (
    DeadlineExceededError,
    FeitianError,
    InternalError,
    InvalidArgumentError,
    MessageTooLargeError,
    NotFoundError,
    OverloadedError,
    ProtocolError,
)
from feitian.rpc.config import LaneConfig, ServerConfig
from feitian.rpc.context import CallContext, PeerInfo, current_deadline
from feitian.rpc.core.address import TcpAddress, UnixAddress, parse_endpoint
from feitian.rpc.core.frame import (
    PROTOCOL_VERSION,
    BadFrame,
    Frame,
    Kind,
    OversizedFrame,
    PayloadPool,
    encode_frame,
)
from feitian.rpc.core.messages import (
    Echo,
    ErrorInfo,
    Health,
    HealthReply,
    Hello,
    HelloAck,
    Request,
    method_name,
)
from feitian.rpc.lanes import Job, Lane
from feitian.rpc.stream import FrameStream

log = logging.getLogger(__name__)

SYSTEM_LANE = "kuafu.system"
_SYSTEM_LANE_CONFIG = LaneConfig(max_concurrency=16, max_queue=1000, idle_workers=1)

F = TypeVar("F", bound=Callable[..., Awaitable[Any]])
R = TypeVar("R")

_encoder = msgspec.msgpack.Encoder()
_hello_decoder = msgspec.msgpack.Decoder(Hello)


class HandlerSpec(NamedTuple):
    request_type: type[Any]
    lane: str | None


def handler(request_type: type[Request[Any]], *, lane: str | None = None) -> Callable[[F], F]:
    """Mark a method of a service object as the handler of ``request_type`` (see :meth:`Server.add_service`)."""

    def mark(fn: F) -> F:
        fn.__feitian_handler__ = HandlerSpec(request_type, lane)  # type: ignore[attr-defined]
        return fn

    return mark


class Method:
    __slots__ = ("decoder", "fn", "lane", "name")

    def __init__(self, name: str, decoder: Any, fn: Callable[[CallContext, Any], Awaitable[Any]], lane: Lane):
        self.name = name
        self.decoder = decoder
        self.fn = fn
        self.lane = lane


class CallJob(Job):
    __slots__ = ("conn", "deadline", "method", "payload", "released", "request", "request_id", "size")

    def __init__(
        self,
        conn: ServerConnection,
        request_id: int,
        method: Method,
        request: Any,
        payload: bytes | bytearray,
        deadline: float | None,
        size: int,
    ) -> None:
        super().__init__()
        self.conn = conn
        self.request_id = request_id
        self.method = method
        self.request = request
        self.payload = payload
        self.deadline = deadline
        self.size = size
        self.released = False

    async def run(self) -> None:
        conn, method, rid = self.conn, self.method, self.request_id
        ctx = CallContext(method.name, rid, conn.peer, self.deadline, self.payload)
        token = current_deadline.set(self.deadline)
        try:
            if self.deadline is None:
                result = await method.fn(ctx, self.request)
            else:
                async with asyncio.timeout_at(self.deadline):
                    result = await method.fn(ctx, self.request)
            body = _encoder.encode(result)
        except FeitianError as exc:
            conn.send_error(rid, exc)
        except TimeoutError:
            if self.deadline is not None and conn.loop.time() >= self.deadline:
                conn.send_error(rid, DeadlineExceededError(f"{method.name}: deadline exceeded in the server"))
            else:
                log.exception("handler of %s raised TimeoutError", method.name)
                conn.send_error(rid, InternalError(f"{method.name}: handler raised TimeoutError"))
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            log.exception("handler of %s failed", method.name)
            conn.send_error(rid, InternalError(f"{method.name} failed: {type(exc).__name__}: {exc}"))
        else:
            conn.send_reply(rid, body, ctx.reply_payload)
        finally:
            current_deadline.reset(token)
            conn.job_finished(self)
            payload = self.payload
            # Recycle a pooled receive buffer if the handler kept no reference to it or to the context
            # (CPython reference counts: the local name and getrefcount's argument).
            if type(payload) is bytearray and sys.getrefcount(ctx) == 2:
                ctx.payload = self.payload = b""
                if sys.getrefcount(payload) == 2:
                    conn.server.pool.give(payload)


class ServerConnection(FrameStream):
    def __init__(self, server: Server) -> None:
        cfg = server.config
        super().__init__(cfg.limits, cfg.write_buffer_high_bytes, server.pool)
        self.server = server
        self.peer = PeerInfo("?", "")
        self.jobs: dict[int, CallJob] = {}
        self.pending_bytes = 0
        self._read_paused = False
        self.established = False
        self._handshake_timer: asyncio.TimerHandle | None = None

    def stream_opened(self) -> None:
        self.peer = PeerInfo(self.peer_label(), "")
        if not self.server.connection_opened(self):
            return
        self._handshake_timer = self.loop.call_later(self.server.config.handshake_timeout_s, self._handshake_expired)

    def _handshake_expired(self) -> None:
        if not self.established:
            self.abort("no Hello within the handshake timeout")

    def frame_received(self, frame: Frame) -> None:
        kind = frame.kind
        if kind == Kind.REQUEST and self.established:
            self.server.dispatch(self, frame)
        elif kind == Kind.CANCEL:
            job = self.jobs.get(frame.request_id)
            if job is not None:
                job.cancel()
                if job.task is None:  # still queued: it will never run, release it now
                    self.job_finished(job)
        elif kind == Kind.PING:
            self.send(encode_frame(Kind.PONG, frame.request_id))
        elif kind == Kind.HELLO and not self.established:
            self._handshake(frame)
        else:
            self.abort(f"unexpected {Kind(kind).name} frame" + ("" if self.established else " before Hello"))

    def _handshake(self, frame: Frame) -> None:
        try:
            hello = _hello_decoder.decode(frame.body)
        except msgspec.MsgspecError as exc:
            self.abort(f"malformed Hello: {exc}")
            return
        if hello.protocol != PROTOCOL_VERSION:
            self.send_error(
                0, ProtocolError(f"protocol {hello.protocol} is not supported (server speaks {PROTOCOL_VERSION})")
            )
            self.abort(f"client speaks protocol {hello.protocol}")
            return
        if hello.target:
            self.send_error(0, InvalidArgumentError(f"{self.server.config.name} is a server, not a Kuafu proxy"))
            self.abort("Hello asked for proxy forwarding")
            return
        self.peer = PeerInfo(self.peer.address, hello.peer_name)
        self.established = True
        if self._handshake_timer is not None:
            self._handshake_timer.cancel()
        cfg = self.server.config
        ack = HelloAck(cfg.name, __version__, cfg.limits.max_body_bytes, cfg.limits.max_payload_bytes)
        self.send(encode_frame(Kind.HELLO_ACK, 0, _encoder.encode(ack)))

    def oversized_received(self, event: OversizedFrame) -> None:
        if event.kind != Kind.REQUEST or not self.established:
            self.abort(f"oversized {event.kind} frame")
            return
        limits = self.limits
        limit = limits.max_body_bytes if event.limit == "body" else limits.max_payload_bytes
        size = event.body_len if event.limit == "body" else event.payload_len
        name = event.name.decode("utf-8", "replace")
        log.warning(
            "refused request %s from %s: %s of %d bytes over the limit", name, self.peer_label(), event.limit, size
        )
        self.send_error(
            event.request_id,
            MessageTooLargeError(
                f"{name}: request {event.limit} of {size} bytes exceeds the server's limit of {limit} bytes",
                limit=limit,
                size=size,
            ),
        )

    def bad_frame_received(self, event: BadFrame) -> None:
        if event.version:
            self.send_error(
                0,
                ProtocolError(f"protocol version {event.version} is not supported (server speaks {PROTOCOL_VERSION})"),
            )
        self.abort(f"protocol error: {event.reason}")

    def stream_closed(self, exc: Exception | None) -> None:
        if self._handshake_timer is not None:
            self._handshake_timer.cancel()
        for job in list(self.jobs.values()):
            job.cancel()
        self.jobs.clear()
        self.server.connection_closed(self)

    # -- replies and accounting --------------------------------------------------------------------------------

    def send_reply(self, rid: int, body: bytes, payload: Any) -> None:
        self.send(encode_frame(Kind.REPLY, rid, body, payload_len=len(payload) if payload else 0), payload)

    def send_error(self, rid: int, exc: FeitianError) -> None:
        try:
            body = _encoder.encode(ErrorInfo.from_exception(exc))
        except (TypeError, msgspec.EncodeError):
            body = _encoder.encode(ErrorInfo(exc.code, exc.message, exc.hint))
        self.send(encode_frame(Kind.ERROR, rid, body))

    def job_started(self, job: CallJob) -> None:
        self.jobs[job.request_id] = job
        self.pending_bytes += job.size
        if not self._read_paused and self.pending_bytes > self.server.config.max_pending_bytes_per_connection:
            self._read_paused = True
            self.pause_reading()

    def job_finished(self, job: CallJob) -> None:
        if job.released:
            return
        job.released = True
        if self.jobs.get(job.request_id) is job:
            del self.jobs[job.request_id]
        self.pending_bytes -= job.size
        if self._read_paused and self.pending_bytes <= self.server.config.max_pending_bytes_per_connection // 2:
            self._read_paused = False
            self.resume_reading()
        if not self.jobs:
            self.server.connection_idle(self)

    def pause_writing(self) -> None:
        # The peer does not read its replies: stop reading its requests too, so its backlog stays bounded.
        super().pause_writing()
        self.pause_reading()

    def resume_writing(self) -> None:
        super().resume_writing()
        if not self._read_paused:
            self.resume_reading()


class Server:
    """A Kuafu server (see module docstring)."""

    def __init__(
        self,
        config: ServerConfig | None = None,
        *,
        health: Callable[[], tuple[str, dict[str, str]]] | None = None,
    ) -> None:
        self.config = config or ServerConfig()
        self.config.validate()
        self._health = health
        self.pool = PayloadPool()
        self._lanes = {name: Lane(name, lane_cfg) for name, lane_cfg in self.config.lanes.items()}
        self._lanes[SYSTEM_LANE] = Lane(SYSTEM_LANE, _SYSTEM_LANE_CONFIG)
        self._methods: dict[bytes, Method] = {}
        self._caller_lanes: dict[str, str] = {}
        self._servers: list[asyncio.base_events.Server] = []
        self._connections: set[ServerConnection] = set()
        self._idle_waiters: list[asyncio.Future[None]] = []
        self.addresses: list[str] = []
        self._started_at = time.monotonic()
        self._closing = False
        self.add_handler(Health, self._on_health, lane=SYSTEM_LANE)
        self.add_handler(Echo, self._on_echo, lane=SYSTEM_LANE)

    # -- registration ------------------------------------------------------------------------------------------

    def add_handler(
        self,
        request_type: type[Request[R]],
        fn: Callable[[CallContext, Any], Awaitable[R]],
        *,
        lane: str | None = None,
    ) -> None:
        self._add_method(method_name(request_type), request_type, fn, lane)

    def add_text_handler(
        self, name: str, fn: Callable[[CallContext, str], Awaitable[str]], *, lane: str | None = None
    ) -> None:
        """A method whose request and reply are plain strings (the seed's string messages)."""
        self._add_method(name, str, fn, lane)

    def add_map_handler(
        self,
        name: str,
        fn: Callable[[CallContext, dict[str, str]], Awaitable[dict[str, str]]],
        *,
        lane: str | None = None,
    ) -> None:
        """A method whose request and reply are string-to-string maps (the seed's map messages)."""
        self._add_method(name, dict[str, str], fn, lane)

    def add_service(self, service: object) -> None:
        """Register every method of ``service`` marked with :func:`handler`."""
        found = False
        for attr in dir(type(service)):
            spec = getattr(getattr(type(service), attr, None), "__feitian_handler__", None)
            if isinstance(spec, HandlerSpec):
                self.add_handler(spec.request_type, getattr(service, attr), lane=spec.lane)
                found = True
        if not found:
            raise InvalidArgumentError(f"{type(service).__name__} has no @handler methods")

    def route_caller(self, peer_name: str, lane: str) -> None:
        """Serve every request from peers that call themselves ``peer_name`` in ``lane``."""
        if lane not in self._lanes:
            raise InvalidArgumentError(f"route_caller: unknown lane {lane!r}")
        self._caller_lanes[peer_name] = lane

    def _add_method(
        self, name: str, rtype: Any, fn: Callable[[CallContext, Any], Awaitable[Any]], lane: str | None
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
        self._methods[key] = Method(name, msgspec.msgpack.Decoder(rtype), fn, self._lanes[lane_name])

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
        deadline = asyncio.get_running_loop().time() + grace
        while any(c.jobs for c in self._connections) and asyncio.get_running_loop().time() < deadline:
            waiter = asyncio.get_running_loop().create_future()
            self._idle_waiters.append(waiter)
            try:
                await asyncio.wait_for(waiter, max(0.0, deadline - asyncio.get_running_loop().time()))
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
        method = self._methods.get(frame.name)
        if method is None:
            name = frame.name.decode("utf-8", "replace")
            conn.send_error(
                rid,
                NotFoundError(f"unknown method {name!r} on {self.config.name}", reason="unknown_method", method=name),
            )
            return
        if rid in conn.jobs:
            conn.abort(f"request id {rid} reused while still in flight")
            return
        try:
            request = method.decoder.decode(frame.body)
        except msgspec.MsgspecError as exc:
            conn.send_error(rid, InvalidArgumentError(f"{method.name}: malformed request: {exc}"))
            return
        deadline = conn.loop.time() + frame.aux / 1000 if frame.aux else None
        job = CallJob(conn, rid, method, request, frame.payload, deadline, len(frame.body) + len(frame.payload))
        lane = method.lane
        if self._caller_lanes:
            routed = self._caller_lanes.get(conn.peer.name)
            if routed is not None and lane.name != SYSTEM_LANE:
                lane = self._lanes[routed]
        try:
            lane.submit(job)
        except OverloadedError as exc:
            conn.send_error(rid, exc)
            return
        conn.job_started(job)

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
            round(time.monotonic() - self._started_at, 3),
            detail,
        )

    async def _on_echo(self, ctx: CallContext, req: Echo) -> bytes:
        if ctx.payload:
            return len(ctx.payload).to_bytes(8, "little")
        return req.data
