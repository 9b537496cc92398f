"""The asyncio edge shared by Kuafu clients, servers and the proxy: one connection carrying frames.

:class:`FrameStream` is an :class:`asyncio.BufferedProtocol` around the pure :class:`FrameDecoder`. Outgoing
frames are queued and written once per event-loop iteration (one system call for many small frames); large
payloads are handed to the transport as separate buffers, never joined. Write back-pressure from the transport
(``pause_writing``) is exposed as :meth:`FrameStream.wait_writable`.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any, cast

from feitian.errors import ProtocolError
from feitian.rpc.core.frame import BadFrame, Frame, FrameDecoder, FrameLimits, OversizedFrame, PayloadPool

log = logging.getLogger(__name__)

Buffer = bytes | bytearray | memoryview

_JOIN_BELOW = 64 << 10  # queued frames smaller than this in total are joined into one write


class FrameStream(asyncio.BufferedProtocol):
    """Base protocol; subclasses implement :meth:`frame_received` and may override the other hooks."""

    def __init__(
        self, limits: FrameLimits, write_buffer_high_bytes: int = 4 << 20, pool: PayloadPool | None = None
    ) -> None:
        self._decoder = FrameDecoder(limits, pool)
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
        self.close_reason: BaseException | None = None
        self.last_received = self.loop.time()

    # -- asyncio protocol callbacks ----------------------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's transports implement asyncio.Transport without subclassing it.
        transport = cast(asyncio.Transport, transport)
        self.transport = transport
        transport.set_write_buffer_limits(high=self._write_high, low=self._write_high // 4)
        self.stream_opened()

    def get_buffer(self, sizehint: int) -> memoryview:
        return self._decoder.get_buffer(sizehint)

    def buffer_updated(self, nbytes: int) -> None:
        self.last_received = self.loop.time()
        for event in self._decoder.buffer_updated(nbytes):
            if type(event) is Frame:
                self.frame_received(event)
            elif type(event) is OversizedFrame:
                self.oversized_received(event)
            else:
                assert isinstance(event, BadFrame)
                self.bad_frame_received(event)
            if self.closed:
                return

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
        """Queue a frame (``data`` = header, name and body; ``payload`` written after it)."""
        if self.closed:
            return
        self._out.append(data)
        self._out_bytes += len(data)
        if payload:
            self._out.append(payload)
            self._out_bytes += len(payload)
        if not self._flush_scheduled:
            self._flush_scheduled = True
            self.loop.call_soon(self.flush)

    def flush(self) -> None:
        self._flush_scheduled = False
        out = self._out
        if not out or self.transport is None or self.closed:
            return
        self._out = []
        if len(out) == 1:
            self.transport.write(out[0])
        elif self._out_bytes < _JOIN_BELOW:
            self.transport.write(b"".join(out))
        else:
            self.transport.writelines(out)
        self._out_bytes = 0

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
        if self.transport is not None and not self.closed:
            self.flush()
            self.transport.close()

    def abort(self, reason: str) -> None:
        """Close at once, logging why."""
        log.warning("closing connection %s: %s", self.peer_label(), reason)
        self.close_reason = ProtocolError(reason)
        if self.transport is not None and not self.closed:
            self.flush()
            self.transport.close()

    def peer_label(self) -> str:
        if self.transport is None:
            return "?"
        peer: Any = self.transport.get_extra_info("peername")
        if isinstance(peer, tuple) and len(peer) >= 2:
            return f"{peer[0]}:{peer[1]}"
        return str(peer or "unix")
