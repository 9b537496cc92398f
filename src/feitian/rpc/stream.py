"""The asyncio edge shared by Kuafu clients, servers and the proxy: one connection carrying frames.

:class:`FrameStream` is an :class:`asyncio.BufferedProtocol` around the pure :class:`FrameDecoder`. Outgoing
frames are queued and written once per event-loop iteration (one system call for many small frames); large
payloads are handed to the transport as separate buffers, never joined. Write back-pressure from the transport
(``pause_writing``) is exposed as :meth:`FrameStream.wait_writable`.

With a :class:`~feitian.rpc.tls.TlsSession` the stream runs TLS itself: ciphertext is received into the
session's buffer and decrypted straight into the decoder's; queued frames are encrypted once per flush. Frames
queued before the handshake completes are held until it does (:meth:`FrameStream.tls_established`).
"""

from __future__ import annotations

import asyncio
import logging
import socket
import ssl
import struct
from typing import Any, cast

from feitian.errors import ProtocolError
from feitian.rpc.core.frame import MAGIC, BadFrame, Event, Frame, FrameDecoder, FrameLimits, OversizedFrame, PayloadPool
from feitian.rpc.tls import TlsSession, describe_ssl_error

log = logging.getLogger(__name__)

Buffer = bytes | bytearray | memoryview

_JOIN_BELOW = 64 << 10  # queued frames smaller than this in total are joined into one write
_SMALL_PIECE = 16 << 10  # with TLS, consecutive pieces below this are joined into one record
_TLS_SLICE = 128 << 10  # with TLS, large payloads are encrypted and written this much at a time


class FrameStream(asyncio.BufferedProtocol):
    """Base protocol; subclasses implement :meth:`frame_received` and may override the other hooks."""

    def __init__(
        self,
        limits: FrameLimits,
        write_buffer_high_bytes: int = 4 << 20,
        pool: PayloadPool | None = None,
        tls: TlsSession | None = None,
    ) -> None:
        self._decoder = FrameDecoder(limits, pool)
        self.tls = tls
        self._tls_fresh = True  # no ciphertext received yet (a plaintext client is recognised by its first byte)
        self.limits = limits
        self._write_high = write_buffer_high_bytes
        self.transport: asyncio.Transport | None = None
        self.loop = asyncio.get_running_loop()
        self._out: list[Buffer] = []
        self._out_bytes = 0
        self._flush_scheduled = False
        self._writable: asyncio.Future[None] | None = None
        self._write_paused = False
        self.closed = False
        self.closing = False  # close() or abort() was called; connection_lost has not come yet
        self.close_reason: BaseException | None = None
        self.last_received = self.loop.time()

    # -- asyncio protocol callbacks ----------------------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's transports implement asyncio.Transport without subclassing it.
        transport = cast(asyncio.Transport, transport)
        self.transport = transport
        transport.set_write_buffer_limits(high=self._write_high, low=self._write_high // 4)
        self.stream_opened()
        if self.tls is not None and not self.tls.server_side and not self.closing:
            self._tls_step()  # the client speaks first: send the ClientHello

    def get_buffer(self, sizehint: int) -> memoryview:
        if self.tls is not None:
            return self.tls.raw
        return self._decoder.get_buffer(sizehint)

    def buffer_updated(self, nbytes: int) -> None:
        if self.closing:
            return  # closing: nothing more is read
        self.last_received = self.loop.time()
        if self.tls is not None:
            self._tls_received(nbytes)
            return
        self._deliver(self._decoder.buffer_updated(nbytes))

    def _deliver(self, events: list[Event]) -> None:
        for event in events:
            if type(event) is Frame:
                self.frame_received(event)
            elif type(event) is OversizedFrame:
                self.oversized_received(event)
            else:
                assert isinstance(event, BadFrame)
                self.bad_frame_received(event)
            if self.closed or self.closing:
                return

    # -- TLS -------------------------------------------------------------------------------------------------

    def _tls_received(self, nbytes: int) -> None:
        tls = self.tls
        assert tls is not None
        if not tls.established:
            if self._tls_fresh and tls.server_side and nbytes and tls.raw[0] == MAGIC:
                self.plaintext_received()
                return
            self._tls_fresh = False
            tls.incoming.write(tls.raw[:nbytes])
            if not self._tls_step():
                return
        else:
            tls.incoming.write(tls.raw[:nbytes])
        self._tls_read()

    def _tls_step(self) -> bool:
        """Advance the handshake; True once it completed and the stream is still open."""
        tls = self.tls
        assert tls is not None
        try:
            done = tls.handshake()
        except ssl.SSLError as exc:
            self._write_raw(tls.output())  # the alert, so the peer learns why
            self.tls_failed(exc)
            return False
        self._write_raw(tls.output())
        if not done:
            return False
        self.tls_established(tls.peer_certificate())
        if self.closed or self.closing:
            return False
        if self._out:
            self.flush()  # frames queued during the handshake
        return True

    def _tls_read(self) -> None:
        """Decrypt everything received into the decoder's buffers. One TLS record (16 KiB at most) comes out of
        each ``read``; records are read back to back into one decoder buffer before the decoder looks at them."""
        tls = self.tls
        assert tls is not None
        obj, decoder, incoming = tls.obj, self._decoder, tls.incoming
        read = obj.read
        while incoming.pending or obj.pending():
            buf = decoder.get_buffer()
            size, got = len(buf), 0
            try:
                while got < size:
                    n = cast(int, read(size - got, buf[got:] if got else buf))  # with a buffer: a count
                    if not n:
                        break
                    got += n
                    if not incoming.pending and not obj.pending():
                        break
            except ssl.SSLWantReadError:
                pass  # a partial record: the rest has not arrived yet
            except ssl.SSLZeroReturnError:  # the peer's close_notify
                if got:
                    self._deliver(decoder.buffer_updated(got))
                self.close()
                return
            except ssl.SSLError as exc:
                self.tls_failed(exc)
                return
            if not got:
                break
            self._deliver(decoder.buffer_updated(got))
            if self.closed or self.closing:
                return
        self._write_raw(tls.output())  # e.g. a KeyUpdate answer

    def _write_raw(self, data: bytes) -> None:
        if data and self.transport is not None and not self.closed and not self.closing:
            self.transport.write(data)

    def tls_established(self, peer_certificate: bytes) -> None:
        """The TLS handshake completed; ``peer_certificate`` is the peer's DER certificate (b"" if none)."""

    def tls_failed(self, exc: ssl.SSLError) -> None:
        """The TLS handshake or a record failed: the connection cannot continue."""
        self.abort(f"TLS failed: {describe_ssl_error(exc)}")

    def plaintext_received(self) -> None:
        """A TLS server received plaintext Kuafu bytes from a client without TLS."""
        self.abort("a client without TLS connected to a TLS server")

    def eof_received(self) -> bool | None:
        return None  # close the transport

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        if self.close_reason is None:
            self.close_reason = exc
        self._out.clear()
        self._out_bytes = 0
        if self._writable is not None and not self._writable.done():
            self._writable.set_result(None)
        self.stream_closed(exc)

    def pause_writing(self) -> None:
        self._write_paused = True

    def resume_writing(self) -> None:
        self._write_paused = False
        if self._writable is not None and not self._writable.done():
            self._writable.set_result(None)
        self._writable = None

    # -- hooks -------------------------------------------------------------------------------------------------

    def stream_opened(self) -> None:
        pass

    def frame_received(self, frame: Frame) -> None:
        raise NotImplementedError

    def oversized_received(self, event: OversizedFrame) -> None:
        log.warning("dropped an oversized frame (%s over the limit): %r", event.limit, event)

    def bad_frame_received(self, event: BadFrame) -> None:
        self.abort(f"protocol error: {event.reason}")

    def stream_closed(self, exc: Exception | None) -> None:
        pass

    # -- sending -----------------------------------------------------------------------------------------------

    def send(self, data: bytes, payload: Buffer | None = None) -> None:
        """Send a frame (``data`` = header, name and body; ``payload`` written after it). A plaintext frame
        without payload is handed to the transport at once when nothing waits before it (the transport buffers
        what the socket does not take); others are queued and joined into one write in the loop's next step.
        Writing at once measured better than joining a step's frames, for latency and for throughput
        (``feitian bench rpc``, ``feitian bench coord``)."""
        if self.closed:
            return
        if not self._out and not self._flush_scheduled and self.tls is None and not payload:
            transport = self.transport
            if transport is not None and not self.closing:
                transport.write(data)
                return
        self._out.append(data)
        self._out_bytes += len(data)
        if payload:
            self._out.append(payload)
            self._out_bytes += len(payload)
        if not self._flush_scheduled:
            self._flush_scheduled = True
            self.loop.call_soon(self.flush)

    def discard_queued(self) -> None:
        """Drop frames queued and not yet written."""
        self._out.clear()
        self._out_bytes = 0

    def flush(self) -> None:
        self._flush_scheduled = False
        out = self._out
        if not out or self.transport is None or self.closed or self.closing:
            return
        tls = self.tls
        if tls is not None:
            if not tls.established:
                return  # held until the handshake completes
            self._out = []
            self._encrypt(tls, out)
            self._out_bytes = 0
            return
        self._out = []
        if len(out) == 1:
            self.transport.write(out[0])
        elif self._out_bytes < _JOIN_BELOW:
            self.transport.write(b"".join(out))
        else:
            self.transport.writelines(out)
        self._out_bytes = 0

    def _encrypt(self, tls: TlsSession, out: list[Buffer]) -> None:
        """Encrypt ``out`` and hand the ciphertext to the transport. Small pieces are joined into one record;
        large payloads go out in slices of ``_TLS_SLICE`` bytes, each written as soon as it is encrypted, so the
        peer decrypts one slice while this side encrypts the next."""
        assert self.transport is not None
        write, output, transport = tls.obj.write, tls.output, self.transport
        if self._out_bytes < _JOIN_BELOW:
            write(out[0] if len(out) == 1 else b"".join(out))
            transport.write(output())
            return
        small: list[Buffer] = []
        for piece in out:
            if len(piece) < _SMALL_PIECE:
                small.append(piece)
                continue
            if small:
                write(b"".join(small))
                small = []
            view = memoryview(piece)
            for start in range(0, len(view), _TLS_SLICE):
                write(view[start : start + _TLS_SLICE])
                transport.write(output())
        if small:
            write(b"".join(small))
        transport.write(output())

    @property
    def write_paused(self) -> bool:
        return self._write_paused

    async def wait_writable(self) -> None:
        """Return when the transport accepts more data (or the stream closed)."""
        while self._write_paused and not self.closed:
            if self._writable is None or self._writable.done():
                self._writable = self.loop.create_future()
            await asyncio.shield(self._writable)

    def pause_reading(self) -> None:
        if self.transport is not None and not self.closed:
            self.transport.pause_reading()

    def resume_reading(self) -> None:
        if self.transport is not None and not self.closed:
            self.transport.resume_reading()

    def close(self) -> None:
        """Close after queued frames are written."""
        if self.transport is not None and not self.closed and not self.closing:
            self.flush()
            self._close_transport()

    def abort(self, reason: str) -> None:
        """Close at once, logging why."""
        log.warning("closing connection %s: %s", self.peer_label(), reason)
        self.close_reason = ProtocolError(reason)
        if self.transport is not None and not self.closed and not self.closing:
            self.flush()
            self._close_transport()

    def _close_transport(self) -> None:
        assert self.transport is not None
        tls = self.tls
        if tls is not None and tls.established:
            tls.close_notify()
            self._write_raw(tls.output())
        self.closing = True
        self.transport.close()

    def peer_pid(self) -> int:
        """The process on the other end of a Unix socket, from the kernel (SO_PEERCRED); 0 on TCP."""
        sock: Any = None if self.transport is None else self.transport.get_extra_info("socket")
        if sock is None or sock.family != socket.AF_UNIX:
            return 0
        try:
            pid, _uid, _gid = struct.unpack("3i", sock.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, 12))
        except OSError:
            return 0
        return int(pid)

    def peer_label(self) -> str:
        if self.transport is None:
            return "?"
        peer: Any = self.transport.get_extra_info("peername")
        if isinstance(peer, tuple) and len(peer) >= 2:
            return f"{peer[0]}:{peer[1]}"
        return str(peer or "unix")
