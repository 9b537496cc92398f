"""Kuafu's client-side connections: one multiplexed connection per server, and the channel that (re)opens it.

A :class:`ClientConnection` carries every call to one server (or to the proxy, for one target), matching replies
to calls by request id. With TLS (:class:`~feitian.rpc.security.ClientTls`) it runs the handshake itself, checks
the server's certificate, and only then sends its Hello. A :class:`Channel` opens the connection on demand,
retrying with jittered back-off for ``connect_timeout_s``, presents the client's credentials on it before it
carries calls, and re-creates it after it breaks. Refusals that retrying cannot fix (a protocol mismatch, bad
arguments, an authentication or permission refusal) end the connect loop at once.
"""

from __future__ import annotations

import asyncio
import logging
import os
import ssl
from collections.abc import Sequence
from typing import TYPE_CHECKING

import msgspec

from feitian.errors import (
    AccessReason,
    ConnectionLostError,
    DeadlineExceededError,
    FeitianError,
    InvalidArgumentError,
    PermissionDeniedError,
    ProtocolError,
    UnauthenticatedError,
    UnavailableError,
)
from feitian.rpc.config import ClientConfig
from feitian.rpc.core.address import TcpAddress, UnixAddress, parse_endpoint
from feitian.rpc.core.frame import FLAG_NO_REPLY, PROTOCOL_VERSION, BadFrame, Frame, Kind, encode_frame
from feitian.rpc.core.messages import ErrorInfo, Hello, HelloAck, PresentCapability, method_name
from feitian.rpc.security import ClientTls
from feitian.rpc.stream import Buffer, FrameStream
from feitian.rpc.tls import TlsSession, describe_ssl_error

if TYPE_CHECKING:
    from feitian.rpc.client import Client

__all__ = ["Channel", "ClientConnection", "decode_error"]

log = logging.getLogger(__name__)

_encoder = msgspec.msgpack.Encoder()
_error_decoder = msgspec.msgpack.Decoder(ErrorInfo)
_ack_decoder = msgspec.msgpack.Decoder(HelloAck)
_PRESENT = method_name(PresentCapability).encode()
# Refusals that trying again will not fix: the connect loop gives up at once.
_FINAL = (ProtocolError, InvalidArgumentError, UnauthenticatedError, PermissionDeniedError)


class _Pending:
    __slots__ = ("future", "size")

    def __init__(self, future: asyncio.Future[Frame], size: int) -> None:
        self.future = future
        self.size = size


class ClientConnection(FrameStream):
    """One multiplexed connection to a server (or to the proxy, for one target)."""

    def __init__(
        self,
        config: ClientConfig,
        hello: Hello,
        tls: ClientTls | None = None,
        endpoint: str = "",
        server_hostname: str = "localhost",
    ) -> None:
        session = None
        if tls is not None:
            session = TlsSession(tls.ssl_context, server_side=False, server_hostname=server_hostname)
        super().__init__(config.limits, config.write_buffer_high_bytes, tls=session)
        self.config = config
        self._hello = hello
        self._client_tls = tls
        self.endpoint = endpoint
        self.pending: dict[int, _Pending] = {}
        self._next_id = 1
        self.inflight_bytes = 0
        self._room: asyncio.Future[None] | None = None
        self.ready: asyncio.Future[HelloAck] = self.loop.create_future()
        self.draining = False
        self._keepalive: asyncio.TimerHandle | None = None

    def stream_opened(self) -> None:
        # With TLS the Hello is held until the handshake completed and the server was checked.
        self.send(encode_frame(Kind.HELLO, 0, _encoder.encode(self._hello)))
        self._keepalive = self.loop.call_later(self.config.keepalive_interval_s, self._check_alive)

    def tls_established(self, peer_certificate: bytes) -> None:
        assert self._client_tls is not None
        try:
            self._client_tls.check_server(peer_certificate, self.endpoint)
        except FeitianError as exc:
            self._refuse(exc)

    def tls_failed(self, exc: ssl.SSLError) -> None:
        reason = describe_ssl_error(exc)
        where = self.endpoint or self.peer_label()
        tls = self.tls
        if tls is not None and tls.established:  # TLS 1.3: the server checks our certificate after we finish
            message = f"connect {where}: the server refused this client's certificate ({reason})"
            hint = "use an identity issued by this cluster's authority, not expired or revoked (docs/security.md)"
        else:
            message = f"connect {where}: TLS handshake failed ({reason})"
            hint = "is the server part of this cluster? its certificate must come from the cluster's authority"
        self._refuse(UnauthenticatedError(message, hint=hint, reason=AccessReason.TLS_HANDSHAKE, endpoint=where))

    def _refuse(self, exc: FeitianError) -> None:
        if not self.ready.done():
            self.ready.set_exception(exc)
        self.close_reason = exc
        self.discard_queued()  # nothing (not even the Hello) goes to a server we refused
        self.close()

    @property
    def usable(self) -> bool:
        return not self.closed and not self.draining

    def frame_received(self, frame: Frame) -> None:
        kind = frame.kind
        if kind == Kind.REPLY or (kind == Kind.ERROR and frame.request_id):
            pending = self.pending.pop(frame.request_id, None)
            if pending is None:
                return  # the call was cancelled or timed out: a late answer
            self.inflight_bytes -= pending.size
            if self._room is not None and not self._room.done():
                self._room.set_result(None)
            if not pending.future.done():
                pending.future.set_result(frame)
        elif kind == Kind.HELLO_ACK:
            if not self.ready.done():
                try:
                    self.ready.set_result(_ack_decoder.decode(frame.body))
                except msgspec.MsgspecError as exc:
                    self.abort(f"malformed HelloAck: {exc}")
        elif kind == Kind.ERROR:  # request id 0: a connection-level refusal
            refusal = decode_error(frame.body)
            if not self.ready.done():
                self.ready.set_exception(refusal)
            log.info("server %s refused the connection: %s", self.peer_label(), refusal)
        elif kind == Kind.PING:
            self.send(encode_frame(Kind.PONG, frame.request_id))
        elif kind == Kind.GOAWAY:
            self.draining = True  # no new calls here; calls in flight finish
        elif kind != Kind.PONG:
            self.abort(f"unexpected {Kind(kind).name} frame from a server")

    def bad_frame_received(self, event: BadFrame) -> None:
        self.abort(f"protocol error from server: {event.reason}")

    def stream_closed(self, exc: Exception | None) -> None:
        if self._keepalive is not None:
            self._keepalive.cancel()
        reason = self.close_reason
        where = self.peer_label()
        error = ConnectionLostError(f"connection to {where} lost" + (f": {reason}" if reason else ""))
        if self.tls is not None and not self.tls.established:
            error = ConnectionLostError(
                f"connection to {where} closed during the TLS handshake",
                hint="does the server run without security? plain servers do not speak TLS",
            )
        if not self.ready.done():
            self.ready.set_exception(error)
        pending, self.pending = self.pending, {}
        self.inflight_bytes = 0
        for p in pending.values():
            if not p.future.done():
                p.future.set_exception(error)
        if self._room is not None and not self._room.done():
            self._room.set_result(None)

    def _check_alive(self) -> None:
        if self.closed:
            return
        idle = self.loop.time() - self.last_received
        if idle >= self.config.keepalive_timeout_s:
            self.abort(f"no data from the server for {idle:.1f}s (keepalive_timeout_s)")
            return
        if idle >= self.config.keepalive_interval_s:
            self.send(encode_frame(Kind.PING, 0))
        self._keepalive = self.loop.call_later(self.config.keepalive_interval_s, self._check_alive)

    def send_request(
        self, name: bytes, body: bytes, payload: Buffer | None, timeout_ms: int, size: int
    ) -> tuple[int, asyncio.Future[Frame]]:
        rid = self._next_id
        self._next_id = rid + 1
        future: asyncio.Future[Frame] = self.loop.create_future()
        self.pending[rid] = _Pending(future, size)
        self.inflight_bytes += size
        self.send(
            encode_frame(
                Kind.REQUEST, rid, body, name=name, payload_len=len(payload) if payload else 0, aux=timeout_ms
            ),
            payload,
        )
        return rid, future

    def post_request(self, name: bytes, body: bytes, timeout_ms: int) -> None:
        """Send a one-way request (``FLAG_NO_REPLY``): nothing is kept for it here and nothing comes back."""
        rid = self._next_id
        self._next_id = rid + 1
        self.send(encode_frame(Kind.REQUEST, rid, body, name=name, aux=timeout_ms, flags=FLAG_NO_REPLY))

    def cancel_request(self, rid: int) -> None:
        """Forget a call and tell the server to stop working on it."""
        pending = self.pending.pop(rid, None)
        if pending is None:
            return
        self.inflight_bytes -= pending.size
        if self._room is not None and not self._room.done():
            self._room.set_result(None)
        self.send(encode_frame(Kind.CANCEL, rid))

    async def wait_for_room(self, size: int) -> None:
        """Wait until ``size`` more request bytes fit under ``max_inflight_bytes`` (KUAFU-5)."""
        limit = self.config.max_inflight_bytes
        while self.inflight_bytes and self.inflight_bytes + size > limit and not self.closed:
            if self._room is None or self._room.done():
                self._room = self.loop.create_future()
            await asyncio.shield(self._room)

    async def present_capabilities(self, chains: Sequence[bytes]) -> None:
        """Present ``chains`` (``kuafu.PresentCapability``), pipelined; raises the first refusal."""
        futures = []
        for chain in chains:
            body = _encoder.encode(PresentCapability(chain))
            futures.append(self.send_request(_PRESENT, body, None, 0, len(body))[1])
        try:
            for future in futures:
                frame = await future
                if frame.kind != Kind.REPLY:
                    raise decode_error(frame.body)
        finally:  # after a refusal no one waits for the rest: they must not fail unseen when the connection closes
            for future in futures:
                future.cancel()


def decode_error(body: bytes) -> FeitianError:
    try:
        return _error_decoder.decode(body).to_exception()
    except msgspec.MsgspecError as exc:
        return ProtocolError(f"malformed error reply: {exc}")


class Channel:
    """The connection to one endpoint: created on demand, re-created after it breaks."""

    def __init__(self, client: Client, endpoint: str) -> None:
        self.client = client
        self.endpoint = endpoint
        self.address = parse_endpoint(endpoint)
        self.conn: ClientConnection | None = None
        self._connecting: asyncio.Task[ClientConnection] | None = None
        self.last_error: BaseException | None = None  # of the latest failed connection attempt

    async def connection(self, deadline: float | None) -> ClientConnection:
        conn = self.conn
        if conn is not None and conn.usable:
            return conn
        if self._connecting is None or self._connecting.done():
            self._connecting = asyncio.get_running_loop().create_task(self._connect_loop())
            self._connecting.add_done_callback(self._connect_finished)
        task = self._connecting
        if deadline is None:
            return await asyncio.shield(task)
        remaining = deadline - asyncio.get_running_loop().time()
        try:
            return await asyncio.wait_for(asyncio.shield(task), max(0.0, remaining))
        except TimeoutError:
            if self.last_error is not None:  # the server could not be reached: say why
                raise UnavailableError(
                    f"cannot connect to {self.endpoint} before the deadline: {_describe(self.last_error)}",
                    hint="is the server running? `feitian cluster status` lists the local cluster",
                    endpoint=self.endpoint,
                ) from None
            raise DeadlineExceededError(f"connect {self.endpoint}: deadline exceeded") from None

    def _connect_finished(self, task: asyncio.Task[ClientConnection]) -> None:
        """The channel owns its connect task: every caller waits on it through a shield, and a caller whose
        deadline passed (or who was cancelled) stops waiting while the task goes on. Its failure was told to
        every caller still waiting, and its cause stays in ``last_error`` for the next; here it is collected, so
        asyncio does not report it as an exception never retrieved."""
        if not task.cancelled() and (exc := task.exception()) is not None:
            log.debug("connect %s gave up: %s", self.endpoint, exc)

    async def _connect_loop(self) -> ClientConnection:
        clock = self.client.clock
        cfg = self.client.config
        give_up_ns = clock.monotonic_ns() + int(cfg.connect_timeout_s * 1e9)
        attempt = 0
        while True:
            try:
                conn = await self._open()
                self.conn = conn
                self.last_error = None
                return conn
            except _FINAL:
                raise  # the server refused us for a reason retrying will not fix
            except (OSError, FeitianError) as exc:
                last: BaseException = exc
                self.last_error = exc
            delay = self.client.backoff.delay_s(attempt, self.client.rng)
            attempt += 1
            if clock.monotonic_ns() + int(delay * 1e9) > give_up_ns:
                reason = last.fields.get("reason") if isinstance(last, FeitianError) else None
                raise UnavailableError(
                    f"cannot connect to {self.endpoint} ({attempt} attempts): {_describe(last)}",
                    hint="is the server running? `feitian cluster status` lists the local cluster",
                    endpoint=self.endpoint,
                    **({"reason": reason} if reason else {}),
                )
            await clock.sleep(delay)

    async def _open(self) -> ClientConnection:
        loop = asyncio.get_running_loop()
        cfg = self.client.config
        hello = Hello(PROTOCOL_VERSION, cfg.name, "", cfg.limits.max_body_bytes, cfg.limits.max_payload_bytes)
        address = self.address
        if cfg.proxy_path is not None and isinstance(address, TcpAddress):
            hello = Hello(
                PROTOCOL_VERSION, cfg.name, self.endpoint, cfg.limits.max_body_bytes, cfg.limits.max_payload_bytes
            )
            address = UnixAddress(cfg.proxy_path)

        tls = self.client.tls
        hostname = address.host if isinstance(address, TcpAddress) else "localhost"

        def factory() -> ClientConnection:
            return ClientConnection(cfg, hello, tls, self.endpoint, hostname)

        if isinstance(address, TcpAddress):
            _, conn = await loop.create_connection(factory, address.host, address.port)
        else:
            _, conn = await loop.create_unix_connection(factory, address.path)
        try:
            async with asyncio.timeout(max(cfg.connect_timeout_s, 1.0)):
                await conn.ready
                if self.client.credentials is not None:
                    await conn.present_capabilities(self.client.credentials.capabilities())
        except BaseException:
            conn.close()
            raise
        return conn

    def close(self) -> None:
        if self._connecting is not None and not self._connecting.done():
            self._connecting.cancel()
        if self.conn is not None:
            self.conn.close()


def _describe(exc: BaseException) -> str:
    if isinstance(exc, OSError):
        if exc.errno:
            return os.strerror(exc.errno)
        if exc.strerror:
            return exc.strerror
    return str(exc) or type(exc).__name__
