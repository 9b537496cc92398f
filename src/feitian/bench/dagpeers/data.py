"""Deterministic inputs of the DAG benchmark: wordcount text and terasort records, made with numpy.

* **wordcount**: ``files`` text files of at most ``file_bytes`` bytes each, whole lines of 16 words. Words are
  drawn from a Zipf law (weight 1/rank) over a vocabulary of 50,000 distinct lowercase words of 2 to 12
  letters. The manifest records the total word count and the number of distinct words used, which every
  wordcount's output must reproduce.
* **terasort**: ``files`` files of ``records_per_file`` 100-byte records in the style of ``gensort -a``: a
  10-byte key of random printable ASCII (33..126, so byte order under ``LC_ALL=C`` is key order), two spaces,
  the record's index as 32 hex digits, two spaces, 53 filler letters, ``\\n``. The manifest records the count
  and the checksum of all records (:func:`record_checksum`: order-independent, so a sorted output must give it).

Every file depends only on (seed, kind, file index): the same arguments give the same bytes, in any order and
on any machine. ``write_wordcount_file`` / ``write_terasort_file`` stream one file into any object with a
``write(bytes)`` method, a bounded chunk at a time, and ``wordcount_dataset`` / ``terasort_dataset`` write a
whole data set through an opener (a file name -> a writable: a local file, a Pangu file) and return its manifest:
the same bytes wherever they go.

``python -m feitian.bench.dagpeers.data wordcount|terasort DIR [--size-mb N] [--seed S]`` writes a data set
into DIR and prints its manifest.
"""

from __future__ import annotations

import argparse
import json
import os
from collections.abc import Callable
from contextlib import AbstractContextManager
from dataclasses import asdict, dataclass
from typing import Protocol

import numpy as np
import numpy.typing as npt

from feitian.bench.dagpeers.tasks import RECORD_BYTES, record_checksum

__all__ = [
    "MANIFEST",
    "RECORD_BYTES",
    "VOCABULARY",
    "WORDS_PER_LINE",
    "Manifest",
    "Opener",
    "Writable",
    "ensure_dataset",
    "input_files",
    "load_manifest",
    "record_checksum",
    "terasort_dataset",
    "terasort_layout",
    "vocabulary",
    "wordcount_dataset",
    "wordcount_layout",
    "write_terasort",
    "write_terasort_file",
    "write_wordcount",
    "write_wordcount_file",
]

MANIFEST = "manifest.json"
VOCABULARY = 50_000
WORDS_PER_LINE = 16
MIN_WORD, MAX_WORD = 2, 12  # letters
KEY_BYTES = 10
WORDCOUNT_FILES = 8  # 8 x 64 MiB = the 512 MiB
TERASORT_FILES = 16  # 16 x 625,000 records = the 1 GB
CHUNK_WORDS = 1 << 20  # words drawn per step (a multiple of WORDS_PER_LINE): bounds the generator's memory
CHUNK_RECORDS = 1 << 18  # records made per step (26 MB)
DEFAULT_SEED = 1

U8 = npt.NDArray[np.uint8]
U64 = npt.NDArray[np.uint64]


class Writable(Protocol):
    def write(self, data: bytes, /) -> object: ...


Opener = Callable[[str], AbstractContextManager[Writable]]  # a data set's file name -> a file to write it to


def _local_opener(directory: str) -> Opener:
    def opener(name: str) -> AbstractContextManager[Writable]:
        return open(os.path.join(directory, name), "wb")

    return opener


class _Counting:
    """A writable that counts the bytes it passes on."""

    def __init__(self) -> None:
        self.target: Writable | None = None
        self.written = 0

    def write(self, data: bytes, /) -> object:
        assert self.target is not None
        self.written += len(data)
        return self.target.write(data)


@dataclass(frozen=True)
class Manifest:
    """What a data set holds; written last, so a directory with a manifest is complete."""

    kind: str  # "wordcount" | "terasort"
    seed: int
    files: list[str]  # names inside the data set's directory, in order
    total_bytes: int
    words: int = 0  # wordcount: every word of every file
    unique_words: int = 0  # wordcount: distinct words used
    records: int = 0  # terasort
    checksum: int = 0  # terasort: record_checksum of all records


# ---------------------------------------------------------------- wordcount


def vocabulary(seed: int) -> list[bytes]:
    """VOCABULARY distinct random lowercase words, the same for the same seed."""
    rng = np.random.default_rng([seed, 0])
    words: list[bytes] = []
    seen: set[bytes] = set()
    while len(words) < VOCABULARY:
        lengths = rng.integers(MIN_WORD, MAX_WORD + 1, size=VOCABULARY)
        letters = rng.integers(ord("a"), ord("z") + 1, size=int(lengths.sum()), dtype=np.uint8).tobytes()
        start = 0
        for length in lengths.tolist():
            word = letters[start : start + length]
            start += length
            if word not in seen:
                seen.add(word)
                words.append(word)
                if len(words) == VOCABULARY:
                    break
    return words


class _Text:
    """The vocabulary laid out for gathering: each word followed by a space, their offsets and lengths."""

    def __init__(self, seed: int) -> None:
        words = vocabulary(seed)
        self.buffer = np.frombuffer(b"".join(w + b" " for w in words), dtype=np.uint8)
        self.lengths = np.array([len(w) + 1 for w in words], dtype=np.int64)
        self.starts = np.concatenate(([0], np.cumsum(self.lengths)[:-1]))
        weights = 1.0 / np.arange(1, VOCABULARY + 1)
        self.cdf = np.cumsum(weights / weights.sum())

    def draw(self, rng: np.random.Generator, count: int) -> npt.NDArray[np.int64]:
        index = np.searchsorted(self.cdf, rng.random(count))
        return np.minimum(index, VOCABULARY - 1).astype(np.int64)

    def lines(self, index: npt.NDArray[np.int64]) -> tuple[U8, npt.NDArray[np.int64]]:
        """The text of ``index`` (a whole number of lines) and the end offset of each word's separator."""
        lengths = self.lengths[index]
        ends = np.cumsum(lengths)
        total = int(ends[-1])
        # byte j of the output comes from buffer[starts[word] + (j - word's output start)]
        shift = np.repeat(self.starts[index] - (ends - lengths), lengths)
        text = self.buffer[shift + np.arange(total)]
        text[ends[WORDS_PER_LINE - 1 :: WORDS_PER_LINE] - 1] = ord("\n")
        return text, ends


def write_wordcount_file(out: Writable, seed: int, index: int, file_bytes: int) -> tuple[int, U8]:
    """Write wordcount file ``index`` (at most ``file_bytes`` bytes of whole lines) to ``out``.

    Returns the number of words written and a mask over the vocabulary of the words used.
    """
    text = _Text(seed)
    return _write_text(out, text, np.random.default_rng([seed, 1, index]), file_bytes)


def _write_text(out: Writable, text: _Text, rng: np.random.Generator, file_bytes: int) -> tuple[int, U8]:
    used = np.zeros(VOCABULARY, dtype=np.uint8)
    words = 0
    left = file_bytes
    while left > 0:
        # enough words for what is left (6 bytes a word is less than the mean), in whole lines, at most a chunk
        lines = min(CHUNK_WORDS, left // 6 + WORDS_PER_LINE) // WORDS_PER_LINE
        index = text.draw(rng, lines * WORDS_PER_LINE)
        chunk, ends = text.lines(index)
        if len(chunk) > left:  # the last chunk: cut after the last whole line that fits
            line_ends = ends[WORDS_PER_LINE - 1 :: WORDS_PER_LINE]
            lines = int(np.searchsorted(line_ends, left, side="right"))
            if lines == 0:
                break
            kept = lines * WORDS_PER_LINE
            chunk, index = chunk[: int(line_ends[lines - 1])], index[:kept]
        out.write(chunk.tobytes())
        used[index] = 1
        words += len(index)
        left -= len(chunk)
    return words, used


def wordcount_layout(total_bytes: int) -> tuple[int, int]:
    """(files, bytes per file) for a wordcount input of about ``total_bytes``: 8 files, at least 4 KiB each."""
    files = WORDCOUNT_FILES
    return files, max(4096, total_bytes // files)


def wordcount_dataset(opener: Opener, total_bytes: int, seed: int = DEFAULT_SEED) -> Manifest:
    """Write a wordcount data set of about ``total_bytes``, file by file, to ``opener(name)`` (a context manager
    giving a writable: a local file, a Pangu file); returns its manifest (not written anywhere)."""
    files, file_bytes = wordcount_layout(total_bytes)
    text = _Text(seed)
    names, words, used = [], 0, np.zeros(VOCABULARY, dtype=np.uint8)
    counter = _Counting()
    for i in range(files):
        name = f"part-{i:02d}.txt"
        with opener(name) as f:
            counter.target = f
            n, mask = _write_text(counter, text, np.random.default_rng([seed, 1, i]), file_bytes)
        names.append(name)
        words += n
        used |= mask
    return Manifest("wordcount", seed, names, counter.written, words=words, unique_words=int(used.sum()))


def write_wordcount(directory: str, total_bytes: int, seed: int = DEFAULT_SEED) -> Manifest:
    """A wordcount data set of about ``total_bytes`` in ``directory`` (created), manifest included."""
    os.makedirs(directory, exist_ok=True)
    manifest = wordcount_dataset(_local_opener(directory), total_bytes, seed)
    _save_manifest(directory, manifest)
    return manifest


# ---------------------------------------------------------------- terasort

_HEX = np.frombuffer(b"0123456789ABCDEF", dtype=np.uint8)
_HEX_SHIFTS = np.arange(124, -1, -4, dtype=np.uint64)  # 32 hex digits of a 128-bit number, most significant first


def _records(rng: np.random.Generator, first: int, count: int) -> U8:
    """``count`` records whose indexes start at ``first``."""
    a = np.empty((count, RECORD_BYTES), dtype=np.uint8)
    a[:, :KEY_BYTES] = rng.integers(33, 127, size=(count, KEY_BYTES), dtype=np.uint8)
    a[:, 10:12] = ord(" ")
    index = np.arange(first, first + count, dtype=np.uint64)
    low = _HEX_SHIFTS[16:]  # the high 64 bits of the index are 0
    a[:, 12:28] = ord("0")
    a[:, 28:44] = _HEX[((index[:, None] >> low[None, :]) & np.uint64(15)).astype(np.intp)]
    a[:, 44:46] = ord(" ")
    a[:, 46:99] = (ord("A") + (index % np.uint64(26)).astype(np.uint8))[:, None]
    a[:, 99] = ord("\n")
    return a


def write_terasort_file(out: Writable, seed: int, index: int, records_per_file: int) -> int:
    """Write terasort file ``index`` (``records_per_file`` records, global indexes after the earlier files') to
    ``out``; returns its record_checksum."""
    rng = np.random.default_rng([seed, 2, index])
    checksum = 0
    for start in range(0, records_per_file, CHUNK_RECORDS):
        count = min(CHUNK_RECORDS, records_per_file - start)
        a = _records(rng, index * records_per_file + start, count)
        checksum = (checksum + record_checksum(a)) % (1 << 64)
        out.write(a.tobytes())
    return checksum


def terasort_layout(total_bytes: int) -> tuple[int, int]:
    """(files, records per file) for a terasort input of about ``total_bytes``: 16 files, at least 1 record."""
    files = TERASORT_FILES
    return files, max(1, total_bytes // RECORD_BYTES // files)


def terasort_dataset(opener: Opener, total_bytes: int, seed: int = DEFAULT_SEED) -> Manifest:
    """Write a terasort data set of about ``total_bytes``, file by file, to ``opener(name)``; its manifest."""
    files, per_file = terasort_layout(total_bytes)
    names, checksum = [], 0
    for i in range(files):
        name = f"in-{i:02d}.dat"
        with opener(name) as f:
            checksum = (checksum + write_terasort_file(f, seed, i, per_file)) % (1 << 64)
        names.append(name)
    records = files * per_file
    return Manifest("terasort", seed, names, records * RECORD_BYTES, records=records, checksum=checksum)


def write_terasort(directory: str, total_bytes: int, seed: int = DEFAULT_SEED) -> Manifest:
    """A terasort data set of about ``total_bytes`` in ``directory`` (created), manifest included."""
    os.makedirs(directory, exist_ok=True)
    manifest = terasort_dataset(_local_opener(directory), total_bytes, seed)
    _save_manifest(directory, manifest)
    return manifest


# ---------------------------------------------------------------- data sets on disk


def _save_manifest(directory: str, manifest: Manifest) -> None:
    tmp = os.path.join(directory, MANIFEST + ".tmp")
    with open(tmp, "w") as f:
        json.dump(asdict(manifest), f, indent=1)
    os.replace(tmp, os.path.join(directory, MANIFEST))


def load_manifest(directory: str) -> Manifest:
    with open(os.path.join(directory, MANIFEST)) as f:
        return Manifest(**json.load(f))


def input_files(directory: str, manifest: Manifest) -> list[str]:
    return [os.path.join(directory, name) for name in manifest.files]


def ensure_dataset(root: str, kind: str, total_bytes: int, seed: int = DEFAULT_SEED) -> tuple[str, Manifest]:
    """The data set of this kind, size and seed under ``root``, generated unless a complete one is there."""
    directory = os.path.join(root, f"{kind}-{total_bytes}-s{seed}")
    if os.path.exists(os.path.join(directory, MANIFEST)):
        return directory, load_manifest(directory)
    write = write_wordcount if kind == "wordcount" else write_terasort
    return directory, write(directory, total_bytes, seed)


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(prog="python -m feitian.bench.dagpeers.data", description=__doc__.split("\n")[0])
    ap.add_argument("kind", choices=["wordcount", "terasort"])
    ap.add_argument("directory")
    ap.add_argument("--size-mb", type=float, default=8.0, help="about this many MB (10**6 bytes) of input")
    ap.add_argument("--seed", type=int, default=DEFAULT_SEED)
    args = ap.parse_args(argv)
    write = write_wordcount if args.kind == "wordcount" else write_terasort
    manifest = write(args.directory, int(args.size_mb * 1e6), args.seed)
    print(json.dumps(asdict(manifest)))


if __name__ == "__main__":
    main()
