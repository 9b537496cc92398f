"""The per-machine Kuafu proxy (KUAFU-4).

Programs on a machine connect to the proxy over a Unix domain socket and name, in their Hello, the server they
want (``tcp://host:port``). The proxy keeps **one** TCP connection per remote server, shared by every local
program, and forwards frames both ways, rewriting only request ids — bodies and payloads pass through untouched.
A client uses the proxy by setting ``ClientConfig.proxy_path``; nothing else in its code changes.

Lifecycle and failure semantics mirror a direct connection: a local connection is acknowledged only once the
proxy is connected to the target (so the client's connect retries and back-off apply unchanged); if the
proxy's connection to a server breaks, every local connection using it is closed, so their calls in flight fail
with ConnectionLostError exactly as they would without the proxy; a local program that disconnects has its calls
in flight cancelled on the server.

Flow control: a local connection with more than ``max_inflight_bytes_per_client`` of forwarded, unanswered
request bytes is not read from until replies come back; when a server stops reading, the proxy stops reading from
every local program sending to it.

Security: in a secured cluster (``secured=True``) the proxy refuses to forward. Its shared connection to a server
is authenticated as the *proxy*, so forwarding would let any local program act with the proxy's identity, and
with capabilities other programs presented on the same connection (a confused deputy). Every local program is
answered with ``PermissionDeniedError(reason=AccessReason.PROXY_DISABLED)`` and the refusal is logged with the program's
kernel-reported credentials (SO_PEERCRED: pid, uid, gid). docs/security.md describes the design that would make
proxying safe (per-program sessions authenticated end to end).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import socket
import struct
from typing import Any

import msgspec

from feitian import __version__
from feitian.errors import AccessReason, FeitianError, InvalidArgumentError, PermissionDeniedError, ProtocolError
from feitian.rpc.client import Channel, Client, ClientConnection
from feitian.rpc.config import ClientConfig
from feitian.rpc.core.address import TcpAddress
from feitian.rpc.core.frame import (
    FLAG_NO_REPLY,
    PROTOCOL_VERSION,
    Frame,
    FrameLimits,
    Kind,
    OversizedFrame,
    encode_frame,
)
from feitian.rpc.core.messages import ErrorInfo, Hello, HelloAck
from feitian.rpc.stream import FrameStream

log = logging.getLogger(__name__)

_encoder = msgspec.msgpack.Encoder()
_hello_decoder = msgspec.msgpack.Decoder(Hello)


class ProxyConfig(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    socket_path: str = ""  # where local programs connect (unix socket)
    name: str = "rpc-proxy"
    max_clients: int = 10_000
    max_inflight_bytes_per_client: int = 64 << 20
    secured: bool = False  # the cluster runs with security: refuse to forward (see the module docstring)
    upstream: ClientConfig = msgspec.field(default_factory=lambda: ClientConfig(name="rpc-proxy"))
    limits: FrameLimits = msgspec.field(default_factory=FrameLimits)


class _UpstreamConnection(ClientConnection):
    """The proxy's connection to one server: replies are routed back to local connections by request id."""

    def __init__(self, proxy: Proxy, config: ClientConfig, hello: Hello) -> None:
        super().__init__(config, hello)
        self.proxy = proxy
        self.routes: dict[int, tuple[LocalConnection, int]] = {}
        self.locals: set[LocalConnection] = set()

    def frame_received(self, frame: Frame) -> None:
        kind = frame.kind
        if (kind == Kind.REPLY or kind == Kind.ERROR) and frame.request_id:
            route = self.routes.pop(frame.request_id, None)
            if route is None:
                return
            local, rid = route
            local.reply_arrived(rid, frame)
        elif kind == Kind.GOAWAY:
            self.draining = True
            for local in self.locals:
                local.send(encode_frame(Kind.GOAWAY, 0))
        else:
            super().frame_received(frame)

    def forward(self, local: LocalConnection, frame: Frame) -> int:
        up_rid = self._next_id
        self._next_id += 1
        if not frame.flags & FLAG_NO_REPLY:  # a one-way message gets no answer to route back
            self.routes[up_rid] = (local, frame.request_id)
        payload = frame.payload
        self.send(
            encode_frame(
                Kind.REQUEST,
                up_rid,
                frame.body,
                name=frame.name,
                payload_len=len(payload),
                aux=frame.aux,
                flags=frame.flags,
            ),
            payload,
        )
        return up_rid

    def cancel(self, up_rid: int) -> None:
        if self.routes.pop(up_rid, None) is not None:
            self.send(encode_frame(Kind.CANCEL, up_rid))

    def pause_writing(self) -> None:
        super().pause_writing()
        for local in self.locals:
            local.pause_reading()

    def resume_writing(self) -> None:
        super().resume_writing()
        for local in self.locals:
            local.maybe_resume()

    def stream_closed(self, exc: Exception | None) -> None:
        super().stream_closed(exc)
        self.routes.clear()
        for local in list(self.locals):
            local.close()
        self.proxy.upstream_lost(self)


class LocalConnection(FrameStream):
    """A local program's connection to the proxy."""

    def __init__(self, proxy: Proxy) -> None:
        super().__init__(proxy.config.limits, 4 << 20)
        self.proxy = proxy
        self.upstream: _UpstreamConnection | None = None
        self.in_flight: dict[int, tuple[int, int]] = {}  # local rid -> (upstream rid, bytes)
        self.inflight_bytes = 0
        self._attaching = False

    def stream_opened(self) -> None:
        self.proxy.local_opened(self)

    def frame_received(self, frame: Frame) -> None:
        kind = frame.kind
        up = self.upstream
        if kind == Kind.REQUEST and up is not None:
            if frame.request_id in self.in_flight:
                self.abort(f"request id {frame.request_id} reused while in flight")
                return
            size = len(frame.body) + len(frame.payload)
            up_rid = up.forward(self, frame)
            if frame.flags & FLAG_NO_REPLY:
                if up.write_paused:
                    self.pause_reading()
                return
            self.in_flight[frame.request_id] = (up_rid, size)
            self.inflight_bytes += size
            if self.inflight_bytes > self.proxy.config.max_inflight_bytes_per_client or up.write_paused:
                self.pause_reading()
        elif kind == Kind.CANCEL and up is not None:
            entry = self.in_flight.pop(frame.request_id, None)
            if entry is not None:
                self.inflight_bytes -= entry[1]
                up.cancel(entry[0])
        elif kind == Kind.PING:
            self.send(encode_frame(Kind.PONG, frame.request_id))
        elif kind == Kind.HELLO and up is None and not self._attaching:
            self._attaching = True
            self.loop.create_task(self._attach(frame))
        else:
            self.abort(f"unexpected {Kind(kind).name} frame")

    def oversized_received(self, event: OversizedFrame) -> None:
        self.abort(f"oversized frame ({event.limit})")

    async def _attach(self, frame: Frame) -> None:
        try:
            hello = _hello_decoder.decode(frame.body)
        except msgspec.MsgspecError as exc:
            self.abort(f"malformed Hello: {exc}")
            return
        try:
            if self.proxy.config.secured:
                raise self._refuse_secured(hello.target)
            if hello.protocol != PROTOCOL_VERSION:
                raise ProtocolError(f"protocol {hello.protocol} is not supported (proxy speaks {PROTOCOL_VERSION})")
            if not hello.target:
                raise InvalidArgumentError(
                    "this is a Kuafu proxy: the Hello must name a target server",
                    hint="set ClientConfig.proxy_path only for calls to tcp:// servers",
                )
            upstream = await self.proxy.upstream_for(hello.target)
        except FeitianError as exc:
            self.send(encode_frame(Kind.ERROR, 0, _encoder.encode(ErrorInfo.from_exception(exc))))
            self.close()
            return
        if self.closed:
            return
        self.upstream = upstream
        upstream.locals.add(self)
        ack = HelloAck(
            f"{self.proxy.config.name}->{hello.target}",
            __version__,
            self.limits.max_body_bytes,
            self.limits.max_payload_bytes,
        )
        self.send(encode_frame(Kind.HELLO_ACK, 0, _encoder.encode(ack)))

    def _refuse_secured(self, target: str) -> PermissionDeniedError:
        log.warning(
            "refused to forward to %s for local program %s: proxying is disabled in a secured cluster "
            "[reason=proxy_disabled]",
            target or "?",
            self.peer_credentials(),
        )
        return PermissionDeniedError(
            f"{self.proxy.config.name} does not forward calls in a secured cluster: it would act with its own "
            "identity on your behalf (a confused deputy)",
            hint="call the server directly with your identity (drop --proxy / proxy_path); see docs/security.md",
            reason=AccessReason.PROXY_DISABLED,
        )

    def peer_credentials(self) -> str:
        """The connected program's pid, uid and gid as the kernel reports them (SO_PEERCRED)."""
        sock: Any = self.transport.get_extra_info("socket") if self.transport is not None else None
        try:
            raw = sock.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, struct.calcsize("3i"))
            pid, uid, gid = struct.unpack("3i", raw)
        except (AttributeError, OSError, struct.error):
            return "(credentials unknown)"
        return f"pid {pid} uid {uid} gid {gid}"

    def reply_arrived(self, rid: int, frame: Frame) -> None:
        entry = self.in_flight.pop(rid, None)
        if entry is None:
            return
        self.inflight_bytes -= entry[1]
        payload = frame.payload
        self.send(encode_frame(frame.kind, rid, frame.body, payload_len=len(payload)), payload)
        self.maybe_resume()

    def maybe_resume(self) -> None:
        up = self.upstream
        if up is None or up.write_paused:
            return
        if self.inflight_bytes <= self.proxy.config.max_inflight_bytes_per_client // 2:
            self.resume_reading()

    def stream_closed(self, exc: Exception | None) -> None:
        up = self.upstream
        if up is not None:
            up.locals.discard(self)
            for up_rid, _ in self.in_flight.values():
                up.cancel(up_rid)  # the program is gone: stop its calls on the server
        self.in_flight.clear()
        self.proxy.local_closed(self)


class Proxy:
    """See module docstring."""

    def __init__(self, config: ProxyConfig) -> None:
        if not config.socket_path:
            raise InvalidArgumentError("proxy socket_path is empty")
        self.config = config
        self._client = Client(config.upstream)  # for its connect/back-off machinery
        self._upstreams: dict[str, _UpstreamConnection] = {}
        self._connecting: dict[str, asyncio.Task[_UpstreamConnection]] = {}
        self._locals: set[LocalConnection] = set()
        self._server: asyncio.base_events.Server | None = None

    @property
    def upstream_count(self) -> int:
        return len(self._upstreams)

    @property
    def client_count(self) -> int:
        return len(self._locals)

    async def start(self) -> None:
        path = self.config.socket_path
        if os.path.exists(path):
            os.unlink(path)
        loop = asyncio.get_running_loop()
        self._server = await loop.create_unix_server(self._new_local, path, backlog=1024)
        os.chmod(path, 0o666)  # any local program may connect; servers still authenticate each call

    def _new_local(self) -> LocalConnection:
        return LocalConnection(self)

    def local_opened(self, conn: LocalConnection) -> None:
        if len(self._locals) >= self.config.max_clients:
            conn.abort(f"too many local clients (max_clients={self.config.max_clients})")
            return
        self._locals.add(conn)

    async def upstream_for(self, target: str) -> _UpstreamConnection:
        up = self._upstreams.get(target)
        if up is not None and up.usable:
            return up
        task = self._connecting.get(target)
        if task is None or task.done():
            task = asyncio.get_running_loop().create_task(self._connect(target))
            task.add_done_callback(_collect)  # local clients wait through a shield and may leave before it ends
            self._connecting[target] = task
        return await asyncio.shield(task)

    async def _connect(self, target: str) -> _UpstreamConnection:
        cfg = self.config.upstream
        hello = Hello(
            PROTOCOL_VERSION, f"{self.config.name}", "", cfg.limits.max_body_bytes, cfg.limits.max_payload_bytes
        )
        channel = _ProxyChannel(self, target, hello)
        try:
            conn = await channel.connection(None)
        finally:
            self._connecting.pop(target, None)
        assert isinstance(conn, _UpstreamConnection)
        self._upstreams[target] = conn
        return conn

    def upstream_lost(self, conn: _UpstreamConnection) -> None:
        for target, up in list(self._upstreams.items()):
            if up is conn:
                del self._upstreams[target]

    def local_closed(self, conn: LocalConnection) -> None:
        self._locals.discard(conn)

    async def stop(self) -> None:
        if self._server is not None:
            self._server.close()
        for local in list(self._locals):
            local.close()
        for up in list(self._upstreams.values()):
            up.close()
        for task in list(self._connecting.values()):
            task.cancel()
        if self._server is not None:
            await self._server.wait_closed()
        with contextlib.suppress(FileNotFoundError):
            os.unlink(self.config.socket_path)
        await self._client.close()


class _ProxyChannel(Channel):
    """A channel whose connections are :class:`_UpstreamConnection` (same connect retries and back-off)."""

    def __init__(self, proxy: Proxy, endpoint: str, hello: Hello) -> None:
        super().__init__(proxy._client, endpoint)
        self._proxy = proxy
        self._hello = hello

    async def _open(self) -> ClientConnection:
        address = self.address
        if not isinstance(address, TcpAddress):
            raise InvalidArgumentError(f"proxy target {self.endpoint} must be a tcp:// address")
        loop = asyncio.get_running_loop()
        cfg = self._proxy.config.upstream
        _, conn = await loop.create_connection(
            lambda: _UpstreamConnection(self._proxy, cfg, self._hello), address.host, address.port
        )
        try:
            async with asyncio.timeout(max(cfg.connect_timeout_s, 1.0)):
                await conn.ready
        except BaseException:
            conn.close()
            raise
        return conn


def _collect(task: asyncio.Task[_UpstreamConnection]) -> None:
    """Collect a connect task's failure: the local clients still waiting were told; the others left."""
    if not task.cancelled() and (exc := task.exception()) is not None:
        log.debug("proxy: connect gave up: %s", exc)
