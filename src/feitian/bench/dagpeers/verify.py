"""Every run's output is checked against the input's manifest, after the timed window and by the same code for
every framework: it reads the output files back (so a framework cannot pass by what it reports).

* wordcount: the ``word\\tcount`` lines of all partitions add up to the manifest's word count, and name each of
  the manifest's distinct words exactly once.
* terasort: the output files, in partition order, hold the manifest's record count, every key is >= the one
  before it (within and across files), and the records' checksum is the input's.
"""

from __future__ import annotations

import os

import numpy as np

from feitian.bench.dagpeers.data import Manifest, record_checksum
from feitian.bench.dagpeers.tasks import RECORD_BYTES, key_columns

__all__ = ["OutputError", "check_terasort", "check_wordcount", "output_files"]

CHECK_CHUNK_RECORDS = 1 << 20  # records read per step: bounds the check's memory (100 MB)


class OutputError(Exception):
    """A run's output does not match its input."""


def output_files(out_dir: str, suffix: str) -> list[str]:
    if not os.path.isdir(out_dir):
        raise OutputError(f"no output directory {out_dir}")
    return [os.path.join(out_dir, n) for n in sorted(os.listdir(out_dir)) if n.endswith(suffix)]


def check_wordcount(out_dir: str, manifest: Manifest) -> dict[str, int]:
    words = 0
    seen: set[bytes] = set()
    for path in output_files(out_dir, ".tsv"):
        with open(path, "rb") as f:
            for line in f:
                word, _, count = line.rstrip(b"\n").rpartition(b"\t")
                if word in seen:
                    raise OutputError(f"{path}: word {word!r} counted in two places")
                seen.add(word)
                words += int(count)
    if words != manifest.words or len(seen) != manifest.unique_words:
        raise OutputError(
            f"wordcount output has {words} words ({len(seen)} distinct), "
            f"the input {manifest.words} ({manifest.unique_words} distinct)"
        )
    return {"words": words, "unique_words": len(seen)}


def check_terasort(paths: list[str], manifest: Manifest) -> dict[str, int]:
    """``paths``: the output files in key order (partition order; a single file for GNU sort)."""
    records, checksum = 0, 0
    last: tuple[int, int] | None = None
    for path in paths:
        size = os.path.getsize(path)
        if size % RECORD_BYTES:
            raise OutputError(f"{path}: {size} bytes is not a whole number of {RECORD_BYTES}-byte records")
        with open(path, "rb") as f:
            while chunk := f.read(CHECK_CHUNK_RECORDS * RECORD_BYTES):
                a = np.frombuffer(chunk, dtype=np.uint8).reshape(-1, RECORD_BYTES)
                prefix, tail = key_columns(a)
                carried = last is not None  # the previous chunk's last key leads, to compare across chunks
                if last is not None:
                    prefix = np.concatenate(([last[0]], prefix)).astype(np.uint64)
                    tail = np.concatenate(([last[1]], tail)).astype(np.uint16)
                down = (prefix[1:] < prefix[:-1]) | ((prefix[1:] == prefix[:-1]) & (tail[1:] < tail[:-1]))
                if down.any():
                    at = records + int(np.argmax(down)) + (0 if carried else 1)
                    raise OutputError(f"{path}: record {at} of the output is out of order")
                last = (int(prefix[-1]), int(tail[-1]))
                records += len(a)
                checksum = (checksum + record_checksum(a)) % (1 << 64)
    if records != manifest.records or checksum != manifest.checksum:
        raise OutputError(
            f"terasort output has {records} records (checksum {checksum:#x}), "
            f"the input {manifest.records} (checksum {manifest.checksum:#x})"
        )
    return {"records": records, "checksum": checksum}
