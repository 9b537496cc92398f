"""The DAG benchmark's inputs: the same bytes for the same seed, and manifests that agree with an independent
count of what the files hold."""

from __future__ import annotations

import contextlib
import io
import os
import random
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest

from feitian.bench.dagpeers import data, tasks
from feitian.bench.dagpeers.data import (
    RECORD_BYTES,
    VOCABULARY,
    WORDS_PER_LINE,
    ensure_dataset,
    record_checksum,
    vocabulary,
    write_terasort,
    write_terasort_file,
    write_wordcount,
    write_wordcount_file,
)

MASK64 = (1 << 64) - 1


def test_vocabulary_is_distinct_lowercase_words_of_2_to_12_letters() -> None:
    words = vocabulary(1)
    assert len(words) == VOCABULARY == len(set(words))
    assert all(2 <= len(w) <= 12 and w.isalpha() and w.islower() for w in words)
    assert words == vocabulary(1) and words != vocabulary(2)


def test_wordcount_file_is_deterministic_and_made_of_whole_lines() -> None:
    first, second, other = io.BytesIO(), io.BytesIO(), io.BytesIO()
    words, used = write_wordcount_file(first, seed=3, index=1, file_bytes=300_000)
    assert write_wordcount_file(second, seed=3, index=1, file_bytes=300_000)[0] == words
    write_wordcount_file(other, seed=3, index=2, file_bytes=300_000)
    text = first.getvalue()
    assert text == second.getvalue() and text != other.getvalue()
    assert 290_000 < len(text) <= 300_000 and text.endswith(b"\n")
    lines = text.split(b"\n")[:-1]
    assert all(len(line.split(b" ")) == WORDS_PER_LINE for line in lines)
    # independent count: split the text
    vocab = vocabulary(3)
    assert words == len(text.split())
    assert int(used.sum()) == len(set(text.split())) and set(text.split()) <= set(vocab)


def test_wordcount_is_zipf_shaped() -> None:
    out = io.BytesIO()
    write_wordcount_file(out, seed=1, index=0, file_bytes=2_000_000)
    counts: dict[bytes, int] = {}
    for w in out.getvalue().split():
        counts[w] = counts.get(w, 0) + 1
    vocab = vocabulary(1)
    # rank 1 about twice rank 2 and ten times rank 10 (weights 1/rank)
    assert 1.7 < counts[vocab[0]] / counts[vocab[1]] < 2.3
    assert 8 < counts[vocab[0]] / counts[vocab[9]] < 12


def test_wordcount_dataset_manifest_matches_its_files(tmp_path: Path) -> None:
    manifest = write_wordcount(str(tmp_path / "wc"), 400_000, seed=5)
    texts = [(tmp_path / "wc" / name).read_bytes() for name in manifest.files]
    assert len(texts) == 8 and manifest.total_bytes == sum(len(t) for t in texts)
    assert manifest.words == sum(len(t.split()) for t in texts)
    assert manifest.unique_words == len({w for t in texts for w in t.split()})
    # file i of the data set is write_wordcount_file(i): the bytes a Pangu writer would get
    stream = io.BytesIO()
    write_wordcount_file(stream, seed=5, index=3, file_bytes=50_000)
    assert stream.getvalue() == texts[3]


def _python_checksum(records: bytes) -> int:
    """record_checksum written with Python integers, record by record."""
    multipliers = [int(m) for m in tasks._WORD_MULTIPLIERS]
    total = 0
    for off in range(0, len(records), RECORD_BYTES):
        rec = records[off : off + RECORD_BYTES]
        h = sum(int.from_bytes(rec[i * 4 : i * 4 + 4], "little") * multipliers[i] for i in range(25)) & MASK64
        for mul in (0xFF51AFD7ED558CCD, 0xC4CEB9FE1A85EC53):
            h ^= h >> 33
            h = (h * mul) & MASK64
        h ^= h >> 33
        total = (total + h) & MASK64
    return total


def test_terasort_file_is_deterministic_gensort_style_records() -> None:
    first, second = io.BytesIO(), io.BytesIO()
    checksum = write_terasort_file(first, seed=2, index=1, records_per_file=3000)
    assert write_terasort_file(second, seed=2, index=1, records_per_file=3000) == checksum
    raw = first.getvalue()
    assert raw == second.getvalue() and len(raw) == 3000 * RECORD_BYTES
    a = np.frombuffer(raw, dtype=np.uint8).reshape(-1, RECORD_BYTES)
    assert ((a[:, :10] >= 33) & (a[:, :10] <= 126)).all() and (a[:, 99] == ord("\n")).all()
    assert raw[10:12] == b"  " and raw[12:44] == b"%032X" % 3000  # file 1 starts after file 0's 3000 records
    assert raw.count(b"\n") == 3000  # one line per record: GNU sort sees records
    assert checksum == record_checksum(a) == _python_checksum(raw)


def test_checksum_ignores_order_but_sees_lost_duplicated_and_exchanged_bytes() -> None:
    out = io.BytesIO()
    write_terasort_file(out, seed=1, index=0, records_per_file=500)
    a = np.frombuffer(out.getvalue(), dtype=np.uint8).reshape(-1, RECORD_BYTES).copy()
    base = record_checksum(a)
    order = list(range(len(a)))
    random.Random(4).shuffle(order)
    assert record_checksum(a[order]) == base
    assert record_checksum(a[1:]) != base
    assert record_checksum(np.concatenate([a, a[:1]])) != base
    swapped = a.copy()
    swapped[0, 50:60], swapped[1, 50:60] = a[1, 50:60], a[0, 50:60]  # the sum of each column is unchanged
    assert record_checksum(swapped) != base


def test_terasort_dataset_manifest_matches_its_files(tmp_path: Path) -> None:
    manifest = write_terasort(str(tmp_path / "ts"), 200_000, seed=9)
    raw = b"".join((tmp_path / "ts" / name).read_bytes() for name in manifest.files)
    assert len(manifest.files) == 16 and manifest.records == 2000 == len(raw) // RECORD_BYTES
    assert manifest.checksum == _python_checksum(raw)
    indexes = [int(raw[off + 12 : off + 44], 16) for off in range(0, len(raw), RECORD_BYTES)]
    assert indexes == list(range(2000))


def test_ensure_dataset_generates_once(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    directory, manifest = ensure_dataset(str(tmp_path), "terasort", 100_000, seed=1)
    stamp = os.stat(os.path.join(directory, manifest.files[0])).st_mtime_ns

    def fail(*_a: object) -> None:
        raise AssertionError("regenerated a complete data set")

    monkeypatch.setattr(data, "write_terasort", fail)
    again, manifest2 = ensure_dataset(str(tmp_path), "terasort", 100_000, seed=1)
    assert (again, manifest2) == (directory, manifest)
    assert os.stat(os.path.join(directory, manifest.files[0])).st_mtime_ns == stamp


class _MemoryFiles:
    """An opener keeping each file in memory, as a Pangu writer would receive it."""

    def __init__(self) -> None:
        self.files: dict[str, io.BytesIO] = {}

    def __call__(self, name: str) -> contextlib.AbstractContextManager[io.BytesIO]:
        self.files[name] = io.BytesIO()
        return contextlib.nullcontext(self.files[name])


@pytest.mark.parametrize(
    ("to_opener", "to_directory"),
    [(data.wordcount_dataset, write_wordcount), (data.terasort_dataset, write_terasort)],
    ids=["wordcount", "terasort"],
)
def test_a_dataset_through_an_opener_is_the_same_as_on_disk(
    tmp_path: Path, to_opener: Callable[..., data.Manifest], to_directory: Callable[..., data.Manifest]
) -> None:
    memory = _MemoryFiles()
    streamed = to_opener(memory, 300_000, seed=4)
    on_disk = to_directory(str(tmp_path), 300_000, seed=4)
    assert streamed == on_disk and streamed.total_bytes == sum(len(f.getvalue()) for f in memory.files.values())
    assert {n: f.getvalue() for n, f in memory.files.items()} == {n: (tmp_path / n).read_bytes() for n in on_disk.files}
