"""Kuafu wire framing: a pure, sans-I/O encoder and incremental decoder.

Every frame is a fixed 26-byte header followed by three sections::

    magic u8 = 0xF7 | version u8 | kind u8 | flags u8 | request_id u64 | aux u32 |
    name_len u16 | body_len u32 | payload_len u32            (little endian)
    name    (name_len bytes)    the method name of a request (UTF-8); empty for other kinds
    body    (body_len bytes)    a msgpack message (the typed request, reply, error or handshake)
    payload (payload_len bytes) raw bulk bytes, never re-encoded

``aux`` is the request's remaining deadline in milliseconds (0 = none) for REQUEST frames, unused otherwise.
``flags`` of a REQUEST: ``FLAG_NO_REPLY`` marks a one-way message (``Client.post``): the server runs the handler
and sends nothing back, not even an error. Other bits are reserved (sent as 0, ignored).

The decoder follows :class:`asyncio.BufferedProtocol`: the driver asks :meth:`FrameDecoder.get_buffer` for a
place to receive into and reports how many bytes arrived with :meth:`FrameDecoder.buffer_updated`, which returns
the events completed by them. Large payloads (``>= large_payload_bytes``) are received straight into a buffer of
their own, so a megabyte payload is copied once, by the kernel. Frames over the limits are skipped without being
buffered and reported as :class:`OversizedFrame`, so the connection survives them. A frame with a bad magic byte
or protocol version is reported as :class:`BadFrame`; the decoder then refuses further input (the stream can no
longer be trusted) and the driver closes the connection.
"""

from __future__ import annotations

import enum
import struct
from typing import Final

import msgspec

from feitian.errors import ConfigError

MAGIC: Final = 0xF7
PROTOCOL_VERSION: Final = 1
HEADER = struct.Struct("<BBBBQIHII")
HEADER_SIZE: Final = HEADER.size  # 26
MAX_NAME_BYTES: Final = 255
MAX_SECTION_BYTES: Final = (1 << 32) - 1
FIRST_BUFFER_BYTES: Final = 16 << 10  # a connection's first receive buffer; it grows while reads fill it


class Kind(enum.IntEnum):
    HELLO = 1  # client -> server: first frame on a connection
    HELLO_ACK = 2  # server -> client: handshake accepted
    REQUEST = 3
    REPLY = 4
    ERROR = 5  # the reply to a request that failed; body is an ErrorInfo
    CANCEL = 6  # client -> server: stop working on request_id
    PING = 7  # keepalive, either direction
    PONG = 8
    GOAWAY = 9  # server -> client: stop sending new requests here (shutdown)


_KIND_MAX: Final = max(Kind)

FLAG_NO_REPLY: Final = 0x01  # REQUEST: a one-way message, answered by nothing


class FrameLimits(msgspec.Struct, frozen=True):
    """Bounds on what a peer may send. Frames over them are refused with MessageTooLargeError."""

    max_body_bytes: int = 16 << 20
    max_payload_bytes: int = 256 << 20
    large_payload_bytes: int = 64 << 10  # payloads at least this big get a receive buffer of their own
    receive_buffer_bytes: int = 256 << 10  # the most a connection receives per read (its buffer starts smaller)

    def validate(self) -> None:
        problems = []
        if not 0 < self.max_body_bytes <= MAX_SECTION_BYTES:
            problems.append(f"max_body_bytes must be in 1..{MAX_SECTION_BYTES}, got {self.max_body_bytes}")
        if not 0 <= self.max_payload_bytes <= MAX_SECTION_BYTES:
            problems.append(f"max_payload_bytes must be in 0..{MAX_SECTION_BYTES}, got {self.max_payload_bytes}")
        if self.large_payload_bytes < 1:
            problems.append(f"large_payload_bytes must be >= 1, got {self.large_payload_bytes}")
        if self.receive_buffer_bytes < 4096:
            problems.append(f"receive_buffer_bytes must be >= 4096, got {self.receive_buffer_bytes}")
        if problems:
            raise ConfigError("invalid frame limits", problems=problems)


class Frame:
    """One decoded frame. ``payload`` is ``b""`` when absent, a ``bytearray`` when received directly."""

    __slots__ = ("aux", "body", "flags", "kind", "name", "payload", "request_id")

    def __init__(
        self,
        kind: int,
        flags: int,
        request_id: int,
        aux: int,
        name: bytes,
        body: bytes,
        payload: bytes | bytearray,
    ) -> None:
        self.kind = kind
        self.flags = flags
        self.request_id = request_id
        self.aux = aux
        self.name = name
        self.body = body
        self.payload = payload

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Frame):
            return NotImplemented
        return (
            self.kind == other.kind
            and self.flags == other.flags
            and self.request_id == other.request_id
            and self.aux == other.aux
            and self.name == other.name
            and self.body == other.body
            and bytes(self.payload) == bytes(other.payload)
        )

    def __repr__(self) -> str:
        return (
            f"Frame(kind={self.kind}, rid={self.request_id}, aux={self.aux}, name={self.name!r}, "
            f"body={len(self.body)}B, payload={len(self.payload)}B)"
        )


class OversizedFrame(msgspec.Struct, frozen=True):
    """A frame over the limits, skipped. The driver answers it with MessageTooLargeError."""

    kind: int
    request_id: int
    name: bytes
    body_len: int
    payload_len: int
    limit: str  # which bound: "name", "body" or "payload"


class BadFrame(msgspec.Struct, frozen=True):
    """The stream broke the protocol; ``reason`` says how. Fatal for the connection."""

    reason: str
    version: int = 0  # the peer's protocol version, if that was the problem


Event = Frame | OversizedFrame | BadFrame


def encode_header(
    kind: int, request_id: int, name: bytes, body_len: int, payload_len: int, aux: int = 0, flags: int = 0
) -> bytes:
    return HEADER.pack(MAGIC, PROTOCOL_VERSION, kind, flags, request_id, aux, len(name), body_len, payload_len) + name


def encode_frame(
    kind: int,
    request_id: int,
    body: bytes = b"",
    *,
    name: bytes = b"",
    payload_len: int = 0,
    aux: int = 0,
    flags: int = 0,
) -> bytes:
    """Header, name and body as one bytes object; the payload (``payload_len`` bytes) is written after it."""
    return (
        HEADER.pack(MAGIC, PROTOCOL_VERSION, kind, flags, request_id, aux, len(name), len(body), payload_len)
        + name
        + body
    )


class PayloadPool:
    """Recycled receive buffers for large payloads.

    A fresh megabyte ``bytearray`` costs page faults on every use; reusing buffers doubles bulk throughput. A
    buffer is given back only by its last user (the server does so after a handler returns, when nothing else
    refers to the payload). Buffers are kept per exact size, up to ``max_bytes`` in total.
    """

    def __init__(self, max_bytes: int = 64 << 20, max_buffer_bytes: int = 16 << 20) -> None:
        self.max_bytes = max_bytes
        self.max_buffer_bytes = max_buffer_bytes
        self._free: dict[int, list[bytearray]] = {}
        self._held = 0
        self.reused = 0

    def take(self, size: int) -> bytearray:
        free = self._free.get(size)
        if free:
            self._held -= size
            self.reused += 1
            return free.pop()
        return bytearray(size)

    def give(self, buf: bytearray) -> None:
        size = len(buf)
        if size > self.max_buffer_bytes or self._held + size > self.max_bytes:
            return
        self._free.setdefault(size, []).append(buf)
        self._held += size


class FrameDecoder:
    """Incremental decoder; see the module docstring."""

    def __init__(self, limits: FrameLimits | None = None, pool: PayloadPool | None = None) -> None:
        self._limits = limits or FrameLimits()
        self._limits.validate()
        self._pool = pool
        # Most connections carry small frames now and then (a heartbeat, a watch's long poll): their buffer stays
        # small. A connection whose reads fill the buffer gets a bigger one, up to receive_buffer_bytes.
        self._buf = bytearray(min(FIRST_BUFFER_BYTES, self._limits.receive_buffer_bytes))
        self._offered = 0  # bytes offered by the last get_buffer (to see whether the read filled them)
        self._start = 0
        self._end = 0
        self._discard = 0  # bytes of an oversized frame still to skip
        # A large payload being received directly: the frame minus its payload, the buffer, bytes so far.
        self._pending: Frame | None = None
        self._payload: bytearray | None = None
        self._got = 0
        self._broken = False

    @property
    def broken(self) -> bool:
        return self._broken

    @property
    def buffered_bytes(self) -> int:
        """Bytes received but not yet returned as events (for flow-control accounting)."""
        return self._end - self._start + self._got

    def get_buffer(self, sizehint: int = -1) -> memoryview:
        if self._payload is not None:
            return memoryview(self._payload)[self._got :]
        free = len(self._buf) - self._end
        if free < 4096 or (self._start > 0 and free < len(self._buf) // 4):
            self._compact()
        view = memoryview(self._buf)[self._end :]
        self._offered = len(view)
        return view

    def buffer_updated(self, nbytes: int) -> list[Event]:
        if self._broken:
            return []
        if self._payload is not None:
            self._got += nbytes
            if self._got < len(self._payload):
                return []
            frame = self._pending
            assert frame is not None
            frame.payload = self._payload
            self._pending = None
            self._payload = None
            self._got = 0
            return [frame]
        self._end += nbytes
        if nbytes >= self._offered and len(self._buf) < self._limits.receive_buffer_bytes:
            # The read filled the buffer: more is probably waiting. The transport may still hold a view of this
            # buffer, so the bigger one is a new buffer (the live bytes are copied when it is made).
            self._grow(min(self._limits.receive_buffer_bytes, 4 * len(self._buf)))
        return self._parse()

    def feed(self, data: bytes | bytearray | memoryview) -> list[Event]:
        """Decode bytes that already arrived elsewhere (tests, fuzzing, non-buffered transports)."""
        events: list[Event] = []
        view = memoryview(data)
        while view:
            buf = self.get_buffer()
            n = min(len(buf), len(view))
            buf[:n] = view[:n]
            buf.release()
            view = view[n:]
            events.extend(self.buffer_updated(n))
            if self._broken:
                break
        return events

    def _compact(self) -> None:
        """Move live bytes to the front; grow (into a new buffer) if little room is left.

        The transport may still hold a view of the old buffer while ``buffer_updated`` runs, so a buffer is
        never resized in place: growing allocates a new one.
        """
        live = self._end - self._start
        if self._start:
            self._buf[:live] = self._buf[self._start : self._end]
            self._start, self._end = 0, live
        if len(self._buf) - self._end < 4096:
            self._grow(len(self._buf) + max(4096, len(self._buf) // 2))

    def _grow(self, size: int) -> None:
        new = bytearray(size)
        live = self._end - self._start
        new[:live] = self._buf[self._start : self._end]
        self._buf, self._start, self._end = new, 0, live

    def _ensure_capacity(self, need: int) -> None:
        """Make room for ``need`` contiguous bytes from ``_start``."""
        if len(self._buf) - self._start >= need:
            return
        if len(self._buf) >= need:
            self._compact()
        else:
            self._grow(need)

    def _parse(self) -> list[Event]:
        events: list[Event] = []
        buf = self._buf
        limits = self._limits
        while True:
            avail = self._end - self._start
            if self._discard:
                take = min(avail, self._discard)
                self._start += take
                self._discard -= take
                if self._discard:
                    break
                continue
            if avail < HEADER_SIZE:
                break
            start = self._start
            magic, version, kind, flags, rid, aux, name_len, body_len, payload_len = HEADER.unpack_from(buf, start)
            if magic != MAGIC:
                self._broken = True
                events.append(BadFrame(f"bad magic byte 0x{magic:02x} (expected 0x{MAGIC:02x})"))
                break
            if version != PROTOCOL_VERSION:
                self._broken = True
                events.append(BadFrame(f"protocol version {version} (this side speaks {PROTOCOL_VERSION})", version))
                break
            if not 1 <= kind <= _KIND_MAX:
                self._broken = True
                events.append(BadFrame(f"unknown frame kind {kind}"))
                break
            limit = ""
            if name_len > MAX_NAME_BYTES:
                limit = "name"
            elif body_len > limits.max_body_bytes:
                limit = "body"
            elif payload_len > limits.max_payload_bytes:
                limit = "payload"
            if limit:
                name = bytes(buf[start + HEADER_SIZE : start + HEADER_SIZE + min(name_len, avail - HEADER_SIZE)])
                events.append(OversizedFrame(kind, rid, name[:MAX_NAME_BYTES], body_len, payload_len, limit))
                self._start += HEADER_SIZE
                self._discard = name_len + body_len + payload_len
                continue
            head = HEADER_SIZE + name_len + body_len
            if avail < head + payload_len:
                if avail >= head and payload_len >= limits.large_payload_bytes:
                    # Receive the rest of this payload straight into its own buffer.
                    frame = self._slice_frame(kind, flags, rid, aux, name_len, body_len)
                    payload = self._pool.take(payload_len) if self._pool else bytearray(payload_len)
                    have = avail - head
                    payload[:have] = buf[start + head : self._end]
                    self._start = self._end = 0
                    self._pending, self._payload, self._got = frame, payload, have
                    break
                self._ensure_capacity(head + (payload_len if payload_len < limits.large_payload_bytes else 0))
                buf = self._buf
                break
            frame = self._slice_frame(kind, flags, rid, aux, name_len, body_len)
            if payload_len >= limits.large_payload_bytes:
                big = self._pool.take(payload_len) if self._pool else bytearray(payload_len)
                big[:] = buf[start + head : start + head + payload_len]
                frame.payload = big
            elif payload_len:
                frame.payload = bytes(buf[start + head : start + head + payload_len])
            self._start = start + head + payload_len
            events.append(frame)
        if self._start == self._end:
            self._start = self._end = 0
            if len(self._buf) > 4 * self._limits.receive_buffer_bytes:
                self._buf = bytearray(self._limits.receive_buffer_bytes)  # give back a one-off big buffer
        return events

    def _slice_frame(self, kind: int, flags: int, rid: int, aux: int, name_len: int, body_len: int) -> Frame:
        pos = self._start + HEADER_SIZE
        buf = self._buf
        name = bytes(buf[pos : pos + name_len]) if name_len else b""
        pos += name_len
        body = bytes(buf[pos : pos + body_len])
        return Frame(kind, flags, rid, aux, name, body, b"")
