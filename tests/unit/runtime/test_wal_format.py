"""Record framing and the segment scanner, byte by byte (no files)."""

from __future__ import annotations

import pytest

from feitian.runtime.wal_format import (
    ALIGN,
    RECORD_HEADER_SIZE,
    SEGMENT_HEADER_SIZE,
    Record,
    SegmentHeader,
    Tail,
    decode_segment_header,
    encode_record,
    encode_segment_header,
    parse_segment_name,
    record_size,
    scan_segment,
    segment_name,
)


def build(records: list[Record], seq: int = 1, first_index: int = 1) -> tuple[bytearray, list[int]]:
    buf = bytearray(encode_segment_header(seq, first_index))
    offsets = []
    for kind, data in records:
        offsets.append(len(buf))
        encode_record(buf, kind, data, len(buf))
    return buf, offsets


RECORDS = [Record(1, b"alpha"), Record(2, b""), Record(65535, bytes(range(256)) * 3), Record(0, b"x" * 8)]


def test_records_round_trip_and_stay_aligned() -> None:
    buf, offsets = build(RECORDS)
    scan = scan_segment(bytes(buf))
    assert [r for _, r in scan.records] == RECORDS
    assert [off for off, _ in scan.records] == offsets
    assert all(off % ALIGN == 0 for off in offsets)
    assert scan.tail is Tail.END and scan.end == len(buf)


@pytest.mark.parametrize("length", [0, 1, 7, 8, 9, 100])
def test_record_size_includes_header_and_padding(length: int) -> None:
    out = bytearray()
    assert encode_record(out, 1, b"y" * length, SEGMENT_HEADER_SIZE) == len(out) == record_size(length)
    assert len(out) % ALIGN == 0 and len(out) >= RECORD_HEADER_SIZE + length


def test_segment_header_round_trip_and_damage() -> None:
    header = encode_segment_header(7, 12345)
    assert len(header) == SEGMENT_HEADER_SIZE
    assert decode_segment_header(header) == SegmentHeader(7, 12345)
    for i in range(SEGMENT_HEADER_SIZE):
        damaged = bytearray(header)
        damaged[i] ^= 0x01
        assert isinstance(decode_segment_header(bytes(damaged)), str), f"flip at byte {i} not detected"
    assert isinstance(decode_segment_header(header[:10]), str)


def test_segment_names() -> None:
    name = segment_name(1, 1)
    assert name == "0000000000000001-0000000000000001.wal"
    assert parse_segment_name(segment_name(0xABC, 2**64 - 1)) == (0xABC, 2**64 - 1)
    for bad in ["x.wal", "0000000000000001-000000000000000g.wal", name + ".tmp", "LOCK"]:
        assert parse_segment_name(bad) is None


def test_trailing_zeros_are_a_clean_end() -> None:
    buf, _ = build(RECORDS)
    scan = scan_segment(bytes(buf) + bytes(4096))
    assert scan.tail is Tail.ZEROS and scan.end == len(buf) and len(scan.records) == len(RECORDS)


def test_every_cut_of_the_last_record_is_a_torn_tail() -> None:
    buf, offsets = build(RECORDS)
    last = offsets[-1]
    for cut in range(last + 1, len(buf)):
        for tail in (b"", bytes(64), b"\xff" * 5):
            scan = scan_segment(bytes(buf[:cut]) + tail)
            assert scan.end == last, cut
            assert [r for _, r in scan.records] == RECORDS[:-1]
            assert scan.tail in (Tail.TORN, Tail.ZEROS)


def test_every_flipped_byte_of_a_middle_record_is_corruption() -> None:
    buf, offsets = build(RECORDS)
    start, end = offsets[1], offsets[2]
    for i in range(start, end):
        damaged = bytearray(buf)
        damaged[i] ^= 0x40
        scan = scan_segment(bytes(damaged))
        assert scan.tail is Tail.CORRUPT, f"flip at byte {i} not detected"
        assert scan.end == start and scan.evidence == offsets[2]


def test_a_damaged_last_record_is_indistinguishable_from_a_torn_one() -> None:
    # A known limit of any single-copy log: nothing after the last record vouches for it.
    buf, offsets = build(RECORDS)
    buf[offsets[-1] + RECORD_HEADER_SIZE] ^= 0x01
    scan = scan_segment(bytes(buf))
    assert scan.tail is Tail.TORN and scan.end == offsets[-1]


def test_a_record_embedded_in_data_or_moved_does_not_validate() -> None:
    inner = bytearray()
    encode_record(inner, 9, b"smuggled", SEGMENT_HEADER_SIZE + 64)
    buf, _ = build([Record(1, bytes(inner))])
    scan = scan_segment(bytes(buf))
    assert [r.kind for _, r in scan.records] == [1]
    # The same record bytes at another offset are garbage, not a record.
    moved = bytearray(encode_segment_header(1, 1)) + bytes(8) + inner
    assert scan_segment(bytes(moved)).records == []
