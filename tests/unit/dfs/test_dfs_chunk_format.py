"""Chunk checksums: crc32c per block, verified reads of any range, block writes, truncation (PANGU-4)."""

from __future__ import annotations

import pytest
from crc32c import crc32c
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from feitian.dfs.core import (
    apply_block_write,
    block_checksums,
    decode_checksums,
    encode_checksums,
    plan_block_write,
    read_span,
    truncated_checksums,
    verified_slice,
    verify_blocks,
)
from feitian.errors import DataCorruptionError, InvalidArgumentError

B = 64
CAP = 16 * B
PROPS = settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def test_block_checksums_and_table_encoding() -> None:
    data = bytes(range(256)) * 2  # 8 blocks of 64
    table = block_checksums(data + b"xyz", B)
    assert len(table) == 9 and table[0] == crc32c(data[:B]) and table[-1] == crc32c(b"xyz")
    assert decode_checksums(encode_checksums(table)) == table and len(encode_checksums(table)) == 36
    with pytest.raises(DataCorruptionError):
        decode_checksums(b"\x00\x01\x02")
    with pytest.raises(InvalidArgumentError):
        block_checksums(b"x", 0)


def test_read_span_covers_whole_blocks() -> None:
    assert read_span(1000, 70, 10, B) == (64, 128)
    assert read_span(1000, 64, 64, B) == (64, 128)
    assert read_span(1000, 990, 10, B) == (960, 1000)  # the short last block
    assert read_span(1000, 5, 0, B) == (5, 5)
    with pytest.raises(InvalidArgumentError, match=r"outside the chunk's 1000 bytes"):
        read_span(1000, 995, 10, B)


@PROPS
@given(st.binary(min_size=1, max_size=CAP), st.data())
def test_verification_detects_any_flipped_byte_and_accepts_untouched_data(data: bytes, draw: st.DataObject) -> None:
    table = block_checksums(data, B)
    offset = draw.draw(st.integers(0, len(data) - 1))
    length = draw.draw(st.integers(1, len(data) - offset))
    start, end = read_span(len(data), offset, length, B)
    assert verified_slice(data[start:end], start, offset, length, table, B) == data[offset : offset + length]
    flip = draw.draw(st.integers(start, end - 1))
    bit = draw.draw(st.integers(0, 7))
    damaged = bytearray(data)
    damaged[flip] ^= 1 << bit
    with pytest.raises(DataCorruptionError) as info:
        verified_slice(bytes(damaged[start:end]), start, offset, length, table, B, what="chunk 9")
    assert info.value.block == flip // B and "chunk 9: checksum mismatch in block" in info.value.message


def test_verify_errors() -> None:
    data = b"a" * 256
    table = block_checksums(data, B)
    with pytest.raises(InvalidArgumentError, match="not block-aligned"):
        verify_blocks(data[1:], 1, table, B)
    with pytest.raises(DataCorruptionError, match="has no checksum"):
        verify_blocks(data + b"b" * 64, 0, table, B)
    with pytest.raises(InvalidArgumentError, match="not inside the span"):
        verified_slice(data[:64], 0, 60, 10, table, B)


def test_plan_block_write_lists_partial_blocks_to_read() -> None:
    assert plan_block_write(0, 0, 100, CAP, B).old_blocks == ()
    assert plan_block_write(100, 100, 10, CAP, B).old_blocks == (1,)  # appending into a partial block
    assert plan_block_write(300, 10, 20, CAP, B).old_blocks == (0,)  # inside one block: one read
    assert plan_block_write(300, 10, 100, CAP, B).old_blocks == (0, 1)  # head and tail blocks
    assert plan_block_write(300, 64, 64, CAP, B).old_blocks == ()  # whole blocks
    assert plan_block_write(300, 250, 60, CAP, B).new_length == 310
    with pytest.raises(InvalidArgumentError, match="no holes"):
        plan_block_write(100, 101, 1, CAP, B)
    with pytest.raises(InvalidArgumentError, match="capacity"):
        plan_block_write(100, 100, CAP, CAP, B)


@PROPS
@given(st.binary(max_size=CAP // 2), st.data())
def test_block_write_matches_checksumming_from_scratch(base: bytes, draw: st.DataObject) -> None:
    offset = draw.draw(st.integers(0, len(base)))
    data = draw.draw(st.binary(min_size=1, max_size=CAP - offset))
    table = block_checksums(base, B)
    plan = plan_block_write(len(base), offset, len(data), CAP, B)
    old = {b: base[b * B : (b + 1) * B] for b in plan.old_blocks}
    new_table, new_length = apply_block_write(table, len(base), offset, data, old, CAP, B)
    expected = base[:offset] + data + base[offset + len(data) :]
    assert new_length == len(expected) and new_table == block_checksums(expected, B)


def test_block_write_refuses_to_merge_into_a_corrupt_block() -> None:
    base = b"x" * 200
    table = block_checksums(base, B)
    with pytest.raises(DataCorruptionError):
        apply_block_write(table, 200, 10, b"new", {0: b"y" * 64}, CAP, B)
    with pytest.raises(InvalidArgumentError, match="old content of block 0"):
        apply_block_write(table, 200, 10, b"new", {}, CAP, B)
    with pytest.raises(InvalidArgumentError, match="checksums for"):
        apply_block_write(table[:1], 200, 64, b"new", {}, CAP, B)


@PROPS
@given(st.binary(max_size=CAP), st.data())
def test_truncation_matches_checksumming_from_scratch(data: bytes, draw: st.DataObject) -> None:
    new_length = draw.draw(st.integers(0, len(data)))
    table = block_checksums(data, B)
    block = new_length // B
    last = data[block * B : (block + 1) * B] if new_length % B else None
    assert truncated_checksums(table, len(data), new_length, last, B) == block_checksums(data[:new_length], B)


def test_truncation_errors() -> None:
    data = b"z" * 200
    table = block_checksums(data, B)
    with pytest.raises(InvalidArgumentError, match=r"outside 0\.\.200"):
        truncated_checksums(table, 200, 201, None, B)
    with pytest.raises(InvalidArgumentError, match="old content of block 1"):
        truncated_checksums(table, 200, 100, None, B)
    with pytest.raises(DataCorruptionError):
        truncated_checksums(table, 200, 100, b"q" * 64, B)
