"""Every run's output is checked against the input's manifest, after the timed window and by the same code for
every framework: it reads the output files back (so a framework cannot pass by what it reports).

* wordcount: the ``word\\tcount`` lines of all partitions add up to the manifest's word count, and name each of
  the manifest's distinct words exactly once.
* terasort: the output files, in partition order, hold the manifest's record count, every key is >= the one
  before it (within and across files), and the records' checksum is the input's.

``WordcountCheck`` and ``TerasortCheck`` take the output's bytes in any chunks (a Pangu reader's too);
``check_wordcount`` and ``check_terasort`` feed them local files.
"""

from __future__ import annotations

import os

import numpy as np

from feitian.bench.dagpeers.data import Manifest, record_checksum
from feitian.bench.dagpeers.tasks import RECORD_BYTES, key_columns

__all__ = ["OutputError", "TerasortCheck", "WordcountCheck", "check_terasort", "check_wordcount", "output_files"]

CHECK_CHUNK_BYTES = 100 << 20  # bytes read per step: bounds the check's memory


class OutputError(Exception):
    """A run's output does not match its input."""


def output_files(out_dir: str, suffix: str) -> list[str]:
    if not os.path.isdir(out_dir):
        raise OutputError(f"no output directory {out_dir}")
    return [os.path.join(out_dir, n) for n in sorted(os.listdir(out_dir)) if n.endswith(suffix)]


class WordcountCheck:
    """The wordcount check, fed the output's bytes in any chunks (from local files, or from Pangu)."""

    def __init__(self, manifest: Manifest) -> None:
        self.manifest = manifest
        self.words = 0
        self.seen: set[bytes] = set()
        self._pending = b""  # an unfinished line

    def feed(self, data: bytes, source: str = "output") -> None:
        lines = (self._pending + data).split(b"\n")
        self._pending = lines.pop()
        for line in lines:
            word, tab, count = line.rpartition(b"\t")
            if not tab or not count.isdigit():
                raise OutputError(f"{source}: {line[:80]!r} is not a word<TAB>count line")
            if word in self.seen:
                raise OutputError(f"{source}: word {word!r} counted in two places")
            self.seen.add(word)
            self.words += int(count)

    def end_file(self, source: str = "output") -> None:
        if self._pending:
            raise OutputError(f"{source}: the last line has no newline")

    def finish(self) -> dict[str, int]:
        m = self.manifest
        if self.words != m.words or len(self.seen) != m.unique_words:
            raise OutputError(
                f"wordcount output has {self.words} words ({len(self.seen)} distinct), "
                f"the input {m.words} ({m.unique_words} distinct)"
            )
        return {"words": self.words, "unique_words": len(self.seen)}


class TerasortCheck:
    """The terasort check, fed the output's bytes in key order (partition order), in any chunks."""

    def __init__(self, manifest: Manifest) -> None:
        self.manifest = manifest
        self.records = 0
        self.checksum = 0
        self._last: tuple[int, int] | None = None  # the key of the last record seen: order across chunks
        self._pending = b""  # a record split between chunks

    def feed(self, data: bytes, source: str = "output") -> None:
        data = self._pending + data
        whole = len(data) - len(data) % RECORD_BYTES
        self._pending = data[whole:]
        if whole == 0:
            return
        a = np.frombuffer(data, dtype=np.uint8, count=whole).reshape(-1, RECORD_BYTES)
        prefix, tail = key_columns(a)
        carried = self._last is not None
        if self._last is not None:
            prefix = np.concatenate(([self._last[0]], prefix)).astype(np.uint64)
            tail = np.concatenate(([self._last[1]], tail)).astype(np.uint16)
        down = (prefix[1:] < prefix[:-1]) | ((prefix[1:] == prefix[:-1]) & (tail[1:] < tail[:-1]))
        if down.any():
            at = self.records + int(np.argmax(down)) + (0 if carried else 1)
            raise OutputError(f"{source}: record {at} of the output is out of order")
        self._last = (int(prefix[-1]), int(tail[-1]))
        self.records += len(a)
        self.checksum = (self.checksum + record_checksum(a)) % (1 << 64)

    def end_file(self, source: str = "output") -> None:
        if self._pending:
            raise OutputError(f"{source}: ends inside a record (not a whole number of {RECORD_BYTES}-byte records)")

    def finish(self) -> dict[str, int]:
        m = self.manifest
        if self.records != m.records or self.checksum != m.checksum:
            raise OutputError(
                f"terasort output has {self.records} records (checksum {self.checksum:#x}), "
                f"the input {m.records} (checksum {m.checksum:#x})"
            )
        return {"records": self.records, "checksum": self.checksum}


def _check_files(check: WordcountCheck | TerasortCheck, paths: list[str]) -> dict[str, int]:
    for path in paths:
        with open(path, "rb") as f:
            while chunk := f.read(CHECK_CHUNK_BYTES):
                check.feed(chunk, path)
        check.end_file(path)
    return check.finish()


def check_wordcount(out_dir: str, manifest: Manifest) -> dict[str, int]:
    """The ``*.tsv`` files of ``out_dir`` against the manifest."""
    return _check_files(WordcountCheck(manifest), output_files(out_dir, ".tsv"))


def check_terasort(paths: list[str], manifest: Manifest) -> dict[str, int]:
    """``paths``: the output files in key order (partition order; a single file for GNU sort)."""
    return _check_files(TerasortCheck(manifest), paths)
