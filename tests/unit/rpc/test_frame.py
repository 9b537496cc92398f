"""The pure framing core: round trips, every split point, limits, bad input, and fuzzing."""

from __future__ import annotations

import struct

from hypothesis import given, settings
from hypothesis import strategies as st

from feitian.rpc.core.frame import (
    FIRST_BUFFER_BYTES,
    HEADER,
    HEADER_SIZE,
    MAGIC,
    PROTOCOL_VERSION,
    BadFrame,
    Frame,
    FrameDecoder,
    FrameLimits,
    Kind,
    OversizedFrame,
    PayloadPool,
    encode_frame,
)

SMALL_LIMITS = FrameLimits(
    max_body_bytes=1000, max_payload_bytes=5000, large_payload_bytes=512, receive_buffer_bytes=4096
)


def wire(frame: Frame) -> bytes:
    return encode_frame(
        frame.kind,
        frame.request_id,
        frame.body,
        name=frame.name,
        payload_len=len(frame.payload),
        aux=frame.aux,
        flags=frame.flags,
    ) + bytes(frame.payload)


def sample_frames() -> list[Frame]:
    return [
        Frame(Kind.HELLO, 0, 0, 0, b"", b"\x81\xa1a\x01", b""),
        Frame(Kind.REQUEST, 0, 1, 250, b"coord.Get", b"\x91\xa2/a", b""),
        Frame(Kind.REQUEST, 3, 2, 0, b"dfs.Write", b"\x90", bytes(range(256)) * 3),  # large payload path
        Frame(Kind.REPLY, 0, 2, 0, b"", b"\xc0", b"x" * 100),  # small payload, in the main buffer
        Frame(Kind.CANCEL, 0, 1, 0, b"", b"", b""),
    ]


def test_header_is_26_bytes() -> None:
    assert HEADER_SIZE == 26


def test_round_trip_in_one_piece() -> None:
    frames = sample_frames()
    events = FrameDecoder(SMALL_LIMITS).feed(b"".join(wire(f) for f in frames))
    assert events == frames


def test_round_trip_at_every_split_point() -> None:
    frames = sample_frames()
    data = b"".join(wire(f) for f in frames)
    for cut in range(len(data) + 1):
        dec = FrameDecoder(SMALL_LIMITS)
        assert dec.feed(data[:cut]) + dec.feed(data[cut:]) == frames, f"split at {cut}"


def test_byte_by_byte() -> None:
    frames = sample_frames()
    dec = FrameDecoder(SMALL_LIMITS)
    events = []
    for b in b"".join(wire(f) for f in frames):
        events += dec.feed(bytes([b]))
    assert events == frames


def test_large_payload_is_received_into_its_own_buffer() -> None:
    dec = FrameDecoder(SMALL_LIMITS)
    frame = Frame(Kind.REQUEST, 0, 9, 0, b"m", b"\x90", b"p" * 4000)
    data = wire(frame)
    head = data[: HEADER_SIZE + 1 + 1 + 10]
    assert dec.feed(head) == []
    view = dec.get_buffer()
    assert len(view) == 4000 - 10  # exactly the rest of the payload: no copy through the main buffer
    view[:] = data[len(head) :]
    (got,) = dec.buffer_updated(len(view))
    assert isinstance(got, Frame) and isinstance(got.payload, bytearray) and got == frame


def test_pool_recycles_payload_buffers() -> None:
    pool = PayloadPool()
    dec = FrameDecoder(SMALL_LIMITS, pool)
    frame = Frame(Kind.REQUEST, 0, 1, 0, b"m", b"\x90", b"q" * 1000)
    (first,) = dec.feed(wire(frame))
    assert isinstance(first, Frame) and isinstance(first.payload, bytearray)
    pool.give(first.payload)
    (second,) = dec.feed(wire(frame))
    assert isinstance(second, Frame)
    assert second.payload is first.payload and pool.reused == 1 and second == frame


def test_oversized_body_is_skipped_and_stream_continues() -> None:
    big = Frame(Kind.REQUEST, 0, 7, 0, b"coord.Set", b"b" * 2000, b"")
    ok = Frame(Kind.REQUEST, 0, 8, 0, b"coord.Get", b"\x90", b"")
    events = FrameDecoder(SMALL_LIMITS).feed(wire(big) + wire(ok))
    assert events[0] == OversizedFrame(Kind.REQUEST, 7, b"coord.Set", 2000, 0, "body")
    assert events[1] == ok


def test_oversized_payload_is_skipped_without_buffering_it() -> None:
    big = Frame(Kind.REQUEST, 0, 7, 0, b"dfs.Write", b"\x90", b"z" * 6000)
    ok = Frame(Kind.PING, 0, 1, 0, b"", b"", b"")
    dec = FrameDecoder(SMALL_LIMITS)
    events = []
    data = wire(big) + wire(ok)
    for i in range(0, len(data), 700):
        events += dec.feed(data[i : i + 700])
        assert dec.buffered_bytes < 1000  # the skipped payload never accumulates
    assert [type(e) for e in events] == [OversizedFrame, Frame]
    assert events[0].limit == "payload" and events[1] == ok


def test_bad_magic_breaks_the_stream() -> None:
    dec = FrameDecoder()
    bad = b"\x00" + wire(sample_frames()[1])[1:]
    (event,) = dec.feed(bad)
    assert isinstance(event, BadFrame) and "magic" in event.reason
    assert dec.broken and dec.feed(wire(sample_frames()[1])) == []


def test_wrong_version_is_reported_with_the_version() -> None:
    data = HEADER.pack(MAGIC, PROTOCOL_VERSION + 1, Kind.HELLO, 0, 0, 0, 0, 0, 0)
    (event,) = FrameDecoder().feed(data)
    assert isinstance(event, BadFrame) and event.version == PROTOCOL_VERSION + 1


def test_unknown_kind_is_bad() -> None:
    data = HEADER.pack(MAGIC, PROTOCOL_VERSION, 200, 0, 0, 0, 0, 0, 0)
    (event,) = FrameDecoder().feed(data)
    assert isinstance(event, BadFrame) and "kind" in event.reason


def test_body_bigger_than_receive_buffer_grows_it() -> None:
    limits = FrameLimits(max_body_bytes=100_000, receive_buffer_bytes=4096)
    frame = Frame(Kind.REPLY, 0, 3, 0, b"", b"v" * 50_000, b"")
    assert FrameDecoder(limits).feed(wire(frame)) == [frame]


frames_strategy = st.lists(
    st.builds(
        Frame,
        st.sampled_from(list(Kind)),
        st.integers(0, 255),
        st.integers(0, 2**64 - 1),
        st.integers(0, 2**32 - 1),
        st.binary(max_size=20),
        st.binary(max_size=600),
        st.binary(max_size=3000),
    ),
    max_size=8,
)


@settings(max_examples=300, deadline=None)
@given(frames=frames_strategy, cuts=st.lists(st.integers(1, 5000), max_size=12))
def test_any_frames_any_chunking(frames: list[Frame], cuts: list[int]) -> None:
    data = b"".join(wire(f) for f in frames)
    dec = FrameDecoder(
        FrameLimits(max_body_bytes=1000, max_payload_bytes=5000, large_payload_bytes=700, receive_buffer_bytes=4096)
    )
    events = []
    pos = 0
    for cut in cuts:
        events += dec.feed(data[pos : pos + cut])
        pos += cut
    events += dec.feed(data[pos:])
    assert events == frames


@settings(max_examples=500, deadline=None)
@given(data=st.binary(max_size=4000))
def test_fuzz_random_bytes_never_raise(data: bytes) -> None:
    dec = FrameDecoder(SMALL_LIMITS)
    for event in dec.feed(data):
        assert isinstance(event, Frame | OversizedFrame | BadFrame)


@settings(max_examples=500, deadline=None)
@given(
    frames=frames_strategy,
    flips=st.lists(st.tuples(st.integers(0, 10_000), st.integers(1, 255)), max_size=4),
    truncate=st.integers(0, 10_000),
)
def test_fuzz_mutated_frames(frames: list[Frame], flips: list[tuple[int, int]], truncate: int) -> None:
    data = bytearray(b"".join(wire(f) for f in frames))
    for pos, xor in flips:
        if data:
            data[pos % len(data)] ^= xor
    dec = FrameDecoder(SMALL_LIMITS)
    for event in dec.feed(bytes(data[: truncate % (len(data) + 1)])):
        assert isinstance(event, Frame | OversizedFrame | BadFrame)
        if isinstance(event, Frame):
            assert len(event.body) <= SMALL_LIMITS.max_body_bytes
            assert len(event.payload) <= SMALL_LIMITS.max_payload_bytes


def test_header_layout_is_little_endian() -> None:
    data = encode_frame(Kind.REQUEST, 0x0102030405060708, b"B", name=b"N", payload_len=3, aux=9, flags=1)
    assert data[:4] == bytes([MAGIC, PROTOCOL_VERSION, Kind.REQUEST, 1])
    assert struct.unpack_from("<Q", data, 4)[0] == 0x0102030405060708
    assert data[HEADER_SIZE:] == b"NB"


def test_receive_buffer_starts_small_and_grows_while_reads_fill_it() -> None:
    """An idle connection keeps a small buffer (issue 15: subscribers' memory); a busy one gets the full size."""
    limits = FrameLimits(receive_buffer_bytes=256 << 10)
    dec = FrameDecoder(limits)
    first = dec.get_buffer()
    assert len(first) == FIRST_BUFFER_BYTES
    small = wire(Frame(Kind.REQUEST, 0, 1, 0, b"m", b"x" * 100, b""))
    first[: len(small)] = small
    first.release()
    assert len(dec.buffer_updated(len(small))) == 1
    assert len(dec.get_buffer()) == FIRST_BUFFER_BYTES  # a read that did not fill it: no growth
    frames = [Frame(Kind.REQUEST, 0, i, 0, b"m", b"y" * 1000, b"") for i in range(400)]
    stream = b"".join(wire(f) for f in frames)
    got: list[object] = []
    sizes = []
    pos = 0
    while pos < len(stream):
        view = dec.get_buffer()
        sizes.append(len(view))
        n = min(len(view), len(stream) - pos)  # each read fills what it is offered
        view[:n] = stream[pos : pos + n]
        view.release()
        got.extend(dec.buffer_updated(n))
        pos += n
    assert got == frames
    assert max(sizes) > FIRST_BUFFER_BYTES
    assert len(dec.get_buffer()) <= limits.receive_buffer_bytes
