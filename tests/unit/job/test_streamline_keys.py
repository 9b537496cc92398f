"""Streamline's column-wise key functions and block format against their scalar references."""

from __future__ import annotations

import bisect
import os
import subprocess
import sys

import numpy as np
import pyarrow as pa
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from feitian.errors import DataCorruptionError
from feitian.job.streamline import (
    BlockParser,
    encode_block,
    hash_partition_ids,
    key_prefix,
    key_prefixes,
    kv_batch,
    range_partition_ids,
    sort_indices,
    stable_hash,
    stable_hashes,
)

keys_st = st.lists(st.binary(max_size=40), max_size=200)
small_bytes = st.lists(st.binary(max_size=12).map(lambda b: bytes(x % 3 for x in b)), max_size=200)


@settings(max_examples=100, deadline=None)
@given(keys=keys_st, partitions=st.integers(1, 17))
def test_vectorized_hash_equals_the_scalar_reference(keys: list[bytes], partitions: int) -> None:
    column = pa.array(keys, pa.binary())
    assert stable_hashes(column).tolist() == [stable_hash(k) for k in keys]
    assert hash_partition_ids(column, partitions).tolist() == [stable_hash(k) % partitions for k in keys]
    # a slice (non-zero offset) hashes its own keys
    if len(keys) > 2:
        assert stable_hashes(column.slice(1)).tolist() == [stable_hash(k) for k in keys[1:]]


def test_the_hash_is_fixed_across_processes() -> None:
    # pinned values: a change here reroutes every key of every job, and mixes old and new producers' partitions
    pinned = {b"": 0, b"a": 12609935244270955673, b"feitian": 4730861286426271326, b"hello world": 10589227719585335398}
    assert {k: stable_hash(k) for k in pinned} == pinned
    assert stable_hashes(pa.array(list(pinned), pa.binary())).tolist() == list(pinned.values())
    # another interpreter with another hash seed (Python's own hash of bytes would differ) agrees
    code = "from feitian.job.streamline import stable_hash; print([stable_hash(k) for k in (b'a', b'feitian')])"
    env = {**os.environ, "PYTHONHASHSEED": "12345"}
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True).stdout
    assert out.strip() == str([pinned[b"a"], pinned[b"feitian"]])
    assert len({stable_hash(bytes([i])) % 16 for i in range(256)}) == 16  # spreads single bytes over partitions


@settings(max_examples=100, deadline=None)
@given(keys=keys_st, splitters=st.lists(st.integers(0, (1 << 64) - 1), max_size=6))
def test_prefixes_and_range_partitions_equal_the_reference(keys: list[bytes], splitters: list[int]) -> None:
    splitters.sort()
    column = pa.array(keys, pa.binary())
    assert key_prefixes(column).tolist() == [key_prefix(k) for k in keys]
    want = [bisect.bisect_right(splitters, key_prefix(k)) for k in keys]
    assert range_partition_ids(column, splitters).tolist() == want
    # order preserving: a key never lands in a lower partition than a smaller key
    pairs = sorted(zip(keys, want, strict=True))
    assert [j for _, j in pairs] == sorted(j for _, j in pairs)


@settings(max_examples=100, deadline=None)
@given(keys=keys_st, width=st.sampled_from([None, -8, -3, 1, 8, 10, 16, 20]))
def test_sort_indices_is_a_stable_byte_order(keys: list[bytes], width: int | None) -> None:
    if width is not None and width < 0:
        keys = [k[:-width] for k in keys]  # short variable-length keys (trailing zero bytes included)
    elif width is not None:
        keys = [k[:width].ljust(width, b"\0") for k in keys]  # the fixed-width fast path
    order = sort_indices(pa.array(keys, pa.binary())).tolist()
    assert order == sorted(range(len(keys)), key=lambda i: keys[i])


def test_fixed_width_terasort_keys_use_the_big_endian_prefix() -> None:
    rng = np.random.default_rng(1)
    raw = rng.integers(0, 256, size=(500, 10), dtype=np.uint8)
    keys = [bytes(r) for r in raw]
    assert key_prefixes(pa.array(keys, pa.binary())).tolist() == [int.from_bytes(k[:8], "big") for k in keys]


@settings(max_examples=50, deadline=None)
@given(
    records=st.lists(st.tuples(st.binary(max_size=30), st.binary(max_size=300)), max_size=80), cut=st.integers(1, 97)
)
def test_blocks_round_trip_through_a_parser_fed_in_pieces(records: list[tuple[bytes, bytes]], cut: int) -> None:
    batches = [kv_batch([k for k, _ in records], [v for _, v in records])]
    batches.append(pa.record_batch({"word": pa.array([b"x", b"y"]), "n": pa.array([1, 2], pa.int64())}))
    stream = b"".join(encode_block(b) for b in batches)
    parser = BlockParser()
    got: list[pa.RecordBatch] = []
    for i in range(0, len(stream), cut):
        got.extend(parser.feed(stream[i : i + cut]))
    parser.finish()
    assert [g.to_pylist() for g in got] == [b.to_pylist() for b in batches]
    assert parser.buffered == 0


def test_a_flipped_byte_is_refused_never_passed_on() -> None:
    block = bytearray(encode_block(kv_batch([b"key"], [b"value"])))
    for i in (0, 9, 14, len(block) - 1):  # magic, record count, length, body
        bad = bytearray(block)
        bad[i] ^= 0x01
        parser = BlockParser("fetch")
        with pytest.raises(DataCorruptionError):
            parser.feed(bytes(bad))
            parser.finish()  # a length made longer: the stream ends inside the block
    parser = BlockParser("fetch")
    parser.feed(bytes(block[:-3]))
    with pytest.raises(DataCorruptionError, match="ends inside a block"):
        parser.finish()


@settings(max_examples=150, deadline=None)
@given(keys=small_bytes)
def test_sort_indices_with_many_shared_prefixes_and_zero_bytes(keys: list[bytes]) -> None:
    # bytes 0..2 only: keys that are prefixes of others, trailing zeros, shared 8-byte prefixes, duplicates
    order = sort_indices(pa.array(keys, pa.binary())).tolist()
    assert order == sorted(range(len(keys)), key=lambda i: keys[i])
    short = [k[:8] for k in keys]
    assert sort_indices(pa.array(short, pa.binary())).tolist() == sorted(range(len(short)), key=lambda i: short[i])
