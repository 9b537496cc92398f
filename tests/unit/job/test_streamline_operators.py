"""Streamline's vectorized operators against plain Python: text splits (every line read exactly once), words,
counts, tab-separated output, CSV/Parquet, terasort's range partition and sort."""

from __future__ import annotations

import itertools
import random
from collections import Counter
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pyarrow as pa
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from feitian.errors import InvalidArgumentError
from feitian.job.streamline import (
    OutputStore,
    PartitionedWriter,
    Partitioning,
    StreamlineConfig,
    combine_counts,
    count_words,
    format_tsv,
    kv_to_records,
    parquet_row_groups,
    range_sort,
    read_csv_split,
    read_parquet,
    read_partition,
    read_split,
    read_text_split,
    record_array,
    records_to_kv,
    sample_splitters,
    split_lines,
    tokenize,
    write_csv,
    write_parquet,
)

texty = st.lists(
    st.sampled_from([b"a", b"bb", b" ", b"\n", b"\t", b"ccc", b"\n\n", b"\x0b", b"\xff", b"\r"]), max_size=200
)


def cuts_of(size: int, points: list[int]) -> list[tuple[int, int]]:
    """Contiguous splits covering ``[0, size)``, cut at ``points``."""
    edges = sorted({0, size, *(p % (size + 1) for p in points)})
    return [(a, b - a) for a, b in itertools.pairwise(edges)]


def reader(data: bytes) -> Callable[[int, int], bytes]:
    return lambda offset, n: data[offset : offset + n]


@settings(max_examples=300, deadline=None)
@given(parts=texty, points=st.lists(st.integers(0, 10_000), max_size=12))
def test_every_line_is_read_by_exactly_one_split(parts: list[bytes], points: list[int]) -> None:
    data = b"".join(parts)
    pieces = [read_split(reader(data), len(data), start, length) for start, length in cuts_of(len(data), points)]
    assert b"".join(pieces) == data  # whole lines, each once, in order
    read = 0
    for piece in pieces:
        read += len(piece)
        assert piece == b"" or piece.endswith(b"\n") or read == len(data)  # a split ends at a line's end


def test_split_boundaries_like_hadoop(tmp_path: Path) -> None:
    path = tmp_path / "in.txt"
    path.write_bytes(b"aaa\nbbb\nccc\n")  # lines begin at bytes 0, 4 and 8
    assert read_text_split(path, 0, 4) == b"aaa\nbbb\n"  # the line beginning at its end (byte 4) is its own
    assert read_text_split(path, 4, 4) == b"ccc\n"  # skips "bbb" (the split before read it), reads "ccc"
    assert read_text_split(path, 8, 4) == b""
    assert read_text_split(path, 1, 2) == b""  # no line begins in (1, 3]
    assert read_text_split(path, 2, 2) == b"bbb\n"
    assert read_text_split(path, 20, 5) == b""
    long_line = b"x" * 200_000 + b"\nyy"  # a last line longer than the scan piece, and one without a newline
    path.write_bytes(long_line)
    assert read_text_split(path, 0, 10) == b"x" * 200_000 + b"\n"
    assert read_text_split(path, 10, 10) == b""
    assert read_text_split(path, 100_000, 200_000) == b"yy"
    with pytest.raises(InvalidArgumentError, match="length >= 1"):
        read_text_split(path, 0, 0)


@settings(max_examples=200, deadline=None)
@given(parts=texty)
def test_tokenize_and_lines_equal_bytes_split(parts: list[bytes]) -> None:
    data = b"".join(parts)
    assert tokenize(data).to_pylist() == data.split()
    lines = data.split(b"\n")
    if lines[-1] == b"":
        lines.pop()
    assert split_lines(data).to_pylist() == lines


@settings(max_examples=100, deadline=None)
@given(texts=st.lists(texty.map(b"".join), min_size=1, max_size=4))
def test_counts_and_their_combination_equal_counter(texts: list[bytes]) -> None:
    partials = [count_words(tokenize(t)) for t in texts]
    for t, p in zip(texts, partials, strict=True):
        assert dict(zip(p.column("key").to_pylist(), p.column("count").to_pylist(), strict=True)) == Counter(t.split())
    total = combine_counts(partials)
    got = dict(zip(total.column("key").to_pylist(), total.column("count").to_pylist(), strict=True))
    assert got == sum((Counter(t.split()) for t in texts), Counter())
    assert total.num_rows == len(got)  # each word once


def test_tab_separated_output() -> None:
    batch = count_words(tokenize(b"b a b c b a"))
    want = b"".join(k + b"\t" + str(n).encode() + b"\n" for k, n in zip(*batch.to_pydict().values(), strict=True))
    assert format_tsv(batch) == want
    kv = pa.record_batch({"key": pa.array([b"k1", b"k2"]), "value": pa.array([b"v1", b""])})
    assert format_tsv(kv, value="value") == b"k1\tv1\nk2\t\n"


def test_csv_splits_read_every_row_once() -> None:
    rng = random.Random(5)
    table = pa.table({"id": list(range(500)), "name": [f"n{rng.randint(0, 99)}" for _ in range(500)]})
    data = write_csv(table)
    cuts = cuts_of(len(data), [rng.randint(0, len(data)) for _ in range(7)])
    parts = [read_csv_split(reader(data), len(data), s, n, ["id", "name"]) for s, n in cuts]
    got = pa.concat_tables([p for p in parts if p.num_rows])
    assert got.column("id").to_pylist() == list(range(500))
    assert got.column("name").to_pylist() == table.column("name").to_pylist()


def test_parquet_round_trip_by_row_group() -> None:
    table = pa.table({"k": pa.array([bytes([i % 7]) for i in range(1000)]), "v": list(range(1000))})
    data = write_parquet(table, row_group_rows=300)
    assert parquet_row_groups(data) == 4
    parts = [read_parquet(data, [g]) for g in range(4)]
    assert pa.concat_tables(parts).equals(table)
    assert read_parquet(data, columns=["v"]).column("v").to_pylist() == list(range(1000))


def gensort_like(n: int, seed: int) -> bytes:
    rng = np.random.default_rng(seed)
    rec = np.empty((n, 100), dtype=np.uint8)
    rec[:, :10] = rng.integers(32, 127, size=(n, 10), dtype=np.uint8)  # printable keys, like gensort -a
    rec[:, 10:] = rng.integers(0, 256, size=(n, 90), dtype=np.uint8)
    rec[:, :10][:50] = rec[0, :10]  # some equal keys
    return rec.tobytes()


def test_terasort_range_sort_equals_sorted() -> None:
    data = gensort_like(5000, 1)
    records = record_array(data)
    splitters = sample_splitters(records, 4, sample=1000)
    parts = range_sort(records, splitters)
    flat = [bytes(r) for p in parts for r in p]
    assert sorted(r[:10] for r in flat) == [r[:10] for r in flat]  # globally ordered by key
    assert Counter(flat) == Counter(data[i : i + 100] for i in range(0, len(data), 100))
    with pytest.raises(InvalidArgumentError, match="100-byte records"):
        record_array(data[:-1])


def test_terasort_through_the_writer_under_a_small_bound(tmp_path: Path) -> None:
    data = gensort_like(6000, 2)  # 600 KB against a 64 KiB bound
    records = record_array(data)
    splitters = sample_splitters(records, 3, sample=2000)
    store = OutputStore(tmp_path)
    config = StreamlineConfig(memory_bytes=64 << 10, block_bytes=8 << 10)
    for instance, half in enumerate((records[:3000], records[3000:])):
        w = PartitionedWriter(store, "ts", instance, 0, Partitioning.range(splitters, sort=True), config)
        for start in range(0, len(half), 500):
            w.write(records_to_kv(half[start : start + 500]))
        w.close()
        assert w.stats.spills > 0 and w.stats.peak_buffered_bytes <= config.memory_bytes
    out = b"".join(kv_to_records(b) for j in range(3) for b in read_partition(store, "ts", [0, 1], j, sort=True))
    want = sorted(data[i : i + 100] for i in range(0, len(data), 100))
    got = [out[i : i + 100] for i in range(0, len(out), 100)]
    assert [r[:10] for r in got] == [r[:10] for r in want]
    assert Counter(got) == Counter(want)


def test_vectorized_wordcount_with_a_combiner_under_a_small_bound(tmp_path: Path) -> None:
    rng = random.Random(4)
    vocab = [bytes(rng.choice(b"abcdefgh") for _ in range(rng.randint(1, 9))) for _ in range(3000)]
    lines = [b" ".join(rng.choice(vocab) for _ in range(rng.randint(0, 15))) for _ in range(4000)]
    text = b"\n".join(lines) + b"\n"
    path = tmp_path / "in.txt"
    path.write_bytes(text)
    store = OutputStore(tmp_path / "store")
    config = StreamlineConfig(memory_bytes=16 << 10, block_bytes=4 << 10)
    split = 20_000
    starts = range(0, len(text), split)
    for instance, start in enumerate(starts):
        w = PartitionedWriter(store, "wc", instance, 0, Partitioning.hash(3), config, combiner=combine_counts)
        words = tokenize(read_text_split(path, start, split))
        for i in range(0, len(words), 500):  # many small batches: several spills, each combined first
            w.write(count_words(words.slice(i, 500)))
        w.close()
        assert w.stats.spills > 0 and w.stats.peak_buffered_bytes <= config.memory_bytes
    out = b"".join(format_tsv(combine_counts(read_partition(store, "wc", range(len(starts)), j))) for j in range(3))
    got = {k: int(v) for k, v in (line.split(b"\t") for line in out.splitlines())}
    assert got == Counter(text.split())
