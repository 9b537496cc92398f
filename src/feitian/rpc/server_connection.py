"""The server side of one Kuafu connection, and the jobs it hands to lanes.

:class:`ServerConnection` runs the handshake (TLS first when the server has a
:class:`~feitian.rpc.security.ServerSecurity`, then Hello), hands each REQUEST to :meth:`Server.dispatch`,
answers CANCEL and PING, accounts the bytes of unanswered requests for flow control, and sends replies and
errors. :class:`CallJob` runs one handler in a lane, under the call's deadline.
"""

from __future__ import annotations

import asyncio
import logging
import ssl
import sys
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any

import msgspec

from feitian import __version__
from feitian.errors import (
    AccessReason,
    DeadlineExceededError,
    FeitianError,
    InternalError,
    InvalidArgumentError,
    MessageTooLargeError,
    ProtocolError,
    UnauthenticatedError,
)
from feitian.rpc.context import CallContext, PeerInfo, current_deadline
from feitian.rpc.core.frame import PROTOCOL_VERSION, BadFrame, Frame, Kind, OversizedFrame, encode_frame
from feitian.rpc.core.messages import ErrorInfo, Hello, HelloAck, PresentCapability, PresentReply, PresentToken
from feitian.rpc.lanes import Job, Lane
from feitian.rpc.security import PresentedGrant
from feitian.rpc.stream import FrameStream
from feitian.rpc.tls import TlsSession, describe_ssl_error

if TYPE_CHECKING:
    from feitian.rpc.server import Server

__all__ = ["CallJob", "Inline", "Method", "ServerConnection"]

log = logging.getLogger("feitian.rpc.server")

_encoder = msgspec.msgpack.Encoder()
_hello_decoder = msgspec.msgpack.Decoder(Hello)


Inline = Callable[["ServerConnection", Any], Any]


class Method:
    __slots__ = ("decoder", "fn", "inline", "lane", "name", "rule", "sync")

    def __init__(
        self,
        name: str,
        decoder: Any,
        fn: Callable[[CallContext, Any], Awaitable[Any]],
        lane: Lane,
        rule: Any = None,
        inline: Inline | None = None,
        sync: Callable[[CallContext, Any], Any] | None = None,
    ):
        self.name = name
        self.decoder = decoder
        self.fn = fn
        self.lane = lane
        self.rule = rule
        self.inline = inline  # answered at once, in order with the frames around it (credential presentations)
        self.sync = sync  # a plain function run as the frame arrives, in order, with no task (add_sync_handler)


class CallJob(Job):
    __slots__ = ("conn", "deadline", "method", "payload", "released", "reply", "request", "request_id", "size")

    def __init__(
        self,
        conn: ServerConnection,
        request_id: int,
        method: Method,
        request: Any,
        payload: bytes | bytearray,
        deadline: float | None,
        size: int,
        reply: bool = True,
    ) -> None:
        super().__init__()
        self.reply = reply  # False for a one-way message (FLAG_NO_REPLY): nothing is sent back
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
            body = _encoder.encode(result) if self.reply else b""
        except FeitianError as exc:
            conn.answer_error(rid, exc, self.reply, method.name)
        except TimeoutError:
            if self.deadline is not None and conn.loop.time() >= self.deadline:
                expired = DeadlineExceededError(f"{method.name}: deadline exceeded in the server")
                conn.answer_error(rid, expired, self.reply, method.name)
            else:
                log.exception("handler of %s raised TimeoutError", method.name)
                failed = InternalError(f"{method.name}: handler raised TimeoutError")
                conn.answer_error(rid, failed, self.reply, method.name)
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            log.exception("handler of %s failed", method.name)
            conn.answer_error(
                rid, InternalError(f"{method.name} failed: {type(exc).__name__}: {exc}"), self.reply, method.name
            )
        else:
            if self.reply:
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
        security = server.security
        tls = None if security is None else TlsSession(security.ssl_context, server_side=True, raw=server.tls_raw)
        super().__init__(cfg.limits, cfg.write_buffer_high_bytes, server.pool, tls)
        self.server = server
        self.peer = PeerInfo("?", "")
        self.auth: Any = None  # the security state of the connection, once authenticated
        self.jobs: dict[int, CallJob] = {}
        self.pending_bytes = 0
        self._read_paused = False
        self.established = False
        self._handshake_timer: asyncio.TimerHandle | None = None

    def stream_opened(self) -> None:
        self.peer = PeerInfo(self.peer_label(), "", pid=self.peer_pid())
        if not self.server.connection_opened(self):
            return
        self._handshake_timer = self.loop.call_later(self.server.config.handshake_timeout_s, self._handshake_expired)

    def _handshake_expired(self) -> None:
        if not self.established:
            self.abort("no Hello within the handshake timeout")

    # -- security ----------------------------------------------------------------------------------------------

    def tls_established(self, peer_certificate: bytes) -> None:
        security = self.server.security
        assert security is not None
        try:
            self.auth = security.open_connection(peer_certificate)
        except FeitianError as exc:  # logged by the security layer
            self.send_error(0, exc)
            self.close()
            return
        principal = self.auth.principal
        self.peer = PeerInfo(self.peer.address, principal.name, principal, pid=self.peer.pid)

    def tls_failed(self, exc: ssl.SSLError) -> None:
        if self.auth is None and self.server.security is not None:
            self.server.security.refused(self.peer.address, "tls_handshake", describe_ssl_error(exc))
        self.close_reason = ProtocolError(f"TLS failed: {describe_ssl_error(exc)}")
        self.close()

    def plaintext_received(self) -> None:
        security = self.server.security
        assert security is not None
        message = f"{self.server.config.name} accepts only mutual TLS connections"
        security.refused(self.peer.address, "tls_required", "a client without TLS connected")
        refusal = UnauthenticatedError(
            message,
            hint="connect with a cluster identity (--identity / FEITIAN_IDENTITY; see docs/security.md)",
            reason=AccessReason.TLS_REQUIRED,
        )
        body = _encoder.encode(ErrorInfo.from_exception(refusal))
        assert self.transport is not None
        self.transport.write(encode_frame(Kind.ERROR, 0, body))  # in plaintext: the client cannot read TLS
        self.closing = True
        self.transport.close()

    def present(self, request: PresentCapability | PresentToken) -> PresentReply:
        security = self.server.security
        assert security is not None
        grant: PresentedGrant
        if isinstance(request, PresentCapability):
            grant = security.present_capability(self.auth, request.chain)
        else:
            grant = security.present_token(self.auth, request.token)
        return PresentReply(grant.holder_id, grant.describe(), grant.expires_ns)

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
        if self.auth is None:  # without security the name is the peer's own claim
            self.peer = PeerInfo(self.peer.address, hello.peer_name, pid=self.peer.pid)
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

    def answer_error(self, rid: int, exc: FeitianError, reply: bool, method: str) -> None:
        """Send ``exc`` as the answer to request ``rid``; for a one-way message (``reply`` False) log it instead."""
        if reply:
            self.send_error(rid, exc)
        else:
            log.debug("one-way %s from %s failed: %s", method, self.peer_label(), exc)

    def send_error(self, rid: int, exc: FeitianError) -> None:
        try:
            body = _encoder.encode(ErrorInfo.from_exception(exc))
        except (TypeError, msgspec.EncodeError):
            body = _encoder.encode(ErrorInfo(exc.wire_code, exc.message, exc.hint, retryable=exc.retryable))
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
