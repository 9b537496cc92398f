"""The shared task bodies give what a plain program computes, and the output checks catch wrong outputs."""

from __future__ import annotations

import zlib
from collections import Counter
from pathlib import Path

import numpy as np
import pytest

from feitian.bench.dagpeers import tasks
from feitian.bench.dagpeers.data import Manifest, write_terasort, write_wordcount
from feitian.bench.dagpeers.verify import (
    OutputError,
    TerasortCheck,
    WordcountCheck,
    check_terasort,
    check_wordcount,
    output_files,
)


@pytest.fixture(scope="module")
def wordcount_input(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Manifest]:
    directory = tmp_path_factory.mktemp("wc")
    return directory, write_wordcount(str(directory), 200_000, seed=2)


@pytest.fixture(scope="module")
def terasort_input(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Manifest]:
    directory = tmp_path_factory.mktemp("ts")
    return directory, write_terasort(str(directory), 300_000, seed=2)


def test_noop_returns_its_argument() -> None:
    assert tasks.noop(7) == 7 and tasks.noop(None) is None


def test_wordcount_map_reduce_equals_a_plain_count(wordcount_input: tuple[Path, Manifest], tmp_path: Path) -> None:
    directory, manifest = wordcount_input
    paths = [str(directory / name) for name in manifest.files]
    partitions = 3
    maps = [tasks.wc_map(p, partitions) for p in paths]
    for m in maps:  # each word in its crc32 bucket
        assert all(zlib.crc32(w) % partitions == k for k, bucket in enumerate(m) for w in bucket)
    out = tmp_path / "out"
    results = [tasks.wc_reduce(k, str(out), *[m[k] for m in maps]) for k in range(partitions)]
    reference = Counter(w for p in paths for w in Path(p).read_bytes().split())
    got: Counter[bytes] = Counter()
    for path in output_files(str(out), ".tsv"):
        for line in Path(path).read_bytes().splitlines():
            word, count = line.split(b"\t")
            assert word not in got
            got[word] = int(count)
    assert got == reference
    assert sum(r[1] for r in results) == manifest.words and sum(r[0] for r in results) == manifest.unique_words
    assert check_wordcount(str(out), manifest) == {"words": manifest.words, "unique_words": manifest.unique_words}


def test_wordcount_check_catches_a_wrong_count(wordcount_input: tuple[Path, Manifest], tmp_path: Path) -> None:
    directory, manifest = wordcount_input
    maps = [tasks.wc_map(str(directory / name), 2) for name in manifest.files]
    for k in range(2):
        tasks.wc_reduce(k, str(tmp_path), *[m[k] for m in maps])
    part = tmp_path / "part-00.tsv"
    lines = part.read_bytes().splitlines(keepends=True)
    part.write_bytes(b"".join(lines[1:]))  # one word lost
    with pytest.raises(OutputError, match="words"):
        check_wordcount(str(tmp_path), manifest)


def _terasort(directory: Path, manifest: Manifest, out: Path, partitions: int) -> list[Path]:
    paths = [str(directory / name) for name in manifest.files]
    splitters = tasks.ts_splitters([tasks.ts_sample(p) for p in paths], partitions)
    maps = [tasks.ts_map(p, splitters) for p in paths]
    written = [tasks.ts_reduce(k, str(out), *[m[k] for m in maps]) for k in range(partitions)]
    assert sum(written) == manifest.records
    return [out / f"part-{k:02d}.dat" for k in range(partitions)]


def test_terasort_equals_a_plain_sort(terasort_input: tuple[Path, Manifest], tmp_path: Path) -> None:
    directory, manifest = terasort_input
    parts = _terasort(directory, manifest, tmp_path, 4)
    raw = b"".join((directory / name).read_bytes() for name in manifest.files)
    records = [raw[i : i + 100] for i in range(0, len(raw), 100)]
    expected = sorted(records, key=lambda r: r[:10])
    assert b"".join(p.read_bytes() for p in parts) == b"".join(expected)
    assert all(p.stat().st_size > 0 for p in parts)  # the splitters spread the keys
    got = check_terasort([str(p) for p in parts], manifest)
    assert got == {"records": manifest.records, "checksum": manifest.checksum}


def test_key_columns_order_is_byte_order() -> None:
    rng = np.random.default_rng(0)
    a = rng.integers(33, 127, size=(2000, 100), dtype=np.uint8)
    a[:500, :8] = a[0, :8]  # many equal prefixes: the tail decides
    prefix, tail = tasks.key_columns(a)
    order = np.lexsort((tail, prefix))
    assert [bytes(a[i, :10]) for i in order] == sorted(bytes(r[:10]) for r in a)


def test_terasort_check_catches_disorder_and_loss(terasort_input: tuple[Path, Manifest], tmp_path: Path) -> None:
    directory, manifest = terasort_input
    parts = _terasort(directory, manifest, tmp_path, 2)
    with pytest.raises(OutputError, match="out of order"):  # partitions in the wrong order
        check_terasort([str(parts[1]), str(parts[0])], manifest)
    first = parts[0].read_bytes()
    parts[0].write_bytes(first[100:200] + first[:100] + first[200:])  # two records exchanged
    with pytest.raises(OutputError, match="record 1 of the output is out of order"):
        check_terasort([str(p) for p in parts], manifest)
    parts[0].write_bytes(first[100:])  # one record lost
    with pytest.raises(OutputError, match="records"):
        check_terasort([str(p) for p in parts], manifest)
    parts[0].write_bytes(first[:-1])
    with pytest.raises(OutputError, match="whole number"):
        check_terasort([str(p) for p in parts], manifest)


def test_summaries_check_partitions_without_reading_them_again(
    terasort_input: tuple[Path, Manifest], tmp_path: Path
) -> None:
    directory, manifest = terasort_input
    parts = [tasks.records_of(p.read_bytes()) for p in _terasort(directory, manifest, tmp_path, 3)]
    assert all(tasks.ts_in_order(p) for p in parts)
    summaries = [tasks.ts_summary(p) for p in parts]
    assert tasks.ts_check(summaries) == (manifest.records, manifest.checksum, True)
    assert tasks.ts_check(summaries[::-1])[2] is False
    assert tasks.ts_check([*summaries, tasks.ts_summary(parts[0][:0])]) == (manifest.records, manifest.checksum, True)
    shuffled = parts[1][::-1]
    assert not tasks.ts_in_order(shuffled) and tasks.ts_summary(shuffled).checksum == summaries[1].checksum


def test_checks_take_the_output_in_any_chunks(
    wordcount_input: tuple[Path, Manifest], terasort_input: tuple[Path, Manifest], tmp_path: Path
) -> None:
    """As a Pangu reader hands them: chunks that split records and lines anywhere."""
    directory, manifest = terasort_input
    sorted_bytes = b"".join(p.read_bytes() for p in _terasort(directory, manifest, tmp_path / "ts", 3))
    check = TerasortCheck(manifest)
    for off in range(0, len(sorted_bytes), 4099):
        check.feed(sorted_bytes[off : off + 4099])
    check.end_file()
    assert check.finish() == {"records": manifest.records, "checksum": manifest.checksum}

    wc_dir, wc_manifest = wordcount_input
    maps = [tasks.wc_map(str(wc_dir / name), 2) for name in wc_manifest.files]
    text = b"".join(tasks.wc_format(tasks.wc_merge(*[m[k] for m in maps])) for k in range(2))
    wc = WordcountCheck(wc_manifest)
    for off in range(0, len(text), 333):
        wc.feed(text[off : off + 333])
    wc.end_file()
    assert wc.finish()["words"] == wc_manifest.words
    with pytest.raises(OutputError, match="not a word<TAB>count line"):
        WordcountCheck(wc_manifest).feed(b"the 12\n")
