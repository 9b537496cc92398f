"""The task bodies every framework of the DAG benchmark runs: plain module-level functions, importable by any
worker (Ray and Dask ship them by reference; feitian's JobMaster can name them as ``module:function``).

* ``noop(x)``: the trivial task.
* **wordcount** — map: ``Counter(data.split())`` (the combiner), then each word to bucket
  ``crc32(word) % R`` (stable across processes and runs, unlike ``hash``); reduce: merge the buckets of one
  partition and write ``word\\tcount`` lines.
* **terasort** — sample keys of each input, choose R-1 splitters on the keys' 8-byte big-endian prefix
  (``uint64``), map: range-partition each input's records by that prefix, reduce: concatenate a partition's
  parts, sort by the whole 10-byte key (``lexsort`` on the prefix and the last two bytes) and write it; the
  order check (``ts_in_order``, and ``ts_summary``/``ts_check`` across partitions) and ``record_checksum``, the
  order-independent checksum of a set of records that a sort must keep.

Each step has a form on data (bytes and arrays: what a job reading Pangu calls) and a form on local paths (what
the peers call). Output files are named ``part-RR.tsv`` / ``part-RR.dat`` after their partition.
"""

from __future__ import annotations

import itertools
import os
import zlib
from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass
from typing import TypeVar

import numpy as np
import numpy.typing as npt

__all__ = [
    "RECORD_BYTES",
    "SortedSummary",
    "key_columns",
    "noop",
    "record_checksum",
    "records_of",
    "ts_check",
    "ts_in_order",
    "ts_map",
    "ts_partition",
    "ts_reduce",
    "ts_sample",
    "ts_sample_keys",
    "ts_sort",
    "ts_splitters",
    "ts_summary",
    "wc_count",
    "wc_format",
    "wc_map",
    "wc_merge",
    "wc_reduce",
]

RECORD_BYTES = 100
SAMPLE_PER_INPUT = 20_000
SAMPLE_SEED = 0

U8 = npt.NDArray[np.uint8]
U64 = npt.NDArray[np.uint64]
U16 = npt.NDArray[np.uint16]
T = TypeVar("T")


def noop(x: T) -> T:
    return x


# ---------------------------------------------------------------- wordcount


def wc_count(data: bytes, partitions: int) -> list[Counter[bytes]]:
    """Count the words of ``data`` and split the counts into ``partitions`` buckets by crc32 of the word.

    The buckets are Counters, not plain dicts: Dask's worker-to-worker transfer serializes a plain ``dict``
    item by item (8 buckets of 12,000 words: about 4 s on a 2-core machine) but pickles a dict subclass whole
    (0.07 s), and Ray pickles both alike — so every framework moves the buckets as fast as it can.
    """
    buckets: list[Counter[bytes]] = [Counter() for _ in range(partitions)]
    crc32 = zlib.crc32
    for word, n in Counter(data.split()).items():
        buckets[crc32(word) % partitions][word] = n
    return buckets


def wc_merge(*buckets: Mapping[bytes, int]) -> Counter[bytes]:
    total: Counter[bytes] = Counter()
    for bucket in buckets:
        total.update(bucket)
    return total


def wc_format(counts: Counter[bytes]) -> bytes:
    return b"".join(word + b"\t" + str(n).encode() + b"\n" for word, n in counts.items())


def wc_map(path: str, partitions: int) -> list[Counter[bytes]]:
    """The map task on a local file."""
    with open(path, "rb") as f:
        return wc_count(f.read(), partitions)


def wc_reduce(partition: int, out_dir: str, *buckets: Mapping[bytes, int]) -> tuple[int, int]:
    """The reduce task: merge, write ``out_dir/part-RR.tsv``; returns (distinct words, words)."""
    counts = wc_merge(*buckets)
    os.makedirs(out_dir, exist_ok=True)
    with open(os.path.join(out_dir, f"part-{partition:02d}.tsv"), "wb") as f:
        f.write(wc_format(counts))
    return len(counts), sum(counts.values())


# ---------------------------------------------------------------- terasort


def records_of(data: bytes | bytearray | memoryview) -> U8:
    """100-byte records as an (n, 100) uint8 array (a view of ``data``, no copy)."""
    return np.frombuffer(data, dtype=np.uint8).reshape(-1, RECORD_BYTES)


def key_columns(records: U8) -> tuple[U64, U16]:
    """The 10-byte keys as (big-endian 8-byte prefix, last 2 bytes): their lexicographic order is memcmp order."""
    prefix = records[:, :8].copy().view(">u8").ravel().astype(np.uint64)
    tail = records[:, 8:10].copy().view(">u2").ravel().astype(np.uint16)
    return prefix, tail


def ts_sample_keys(records: U8, count: int = SAMPLE_PER_INPUT) -> U64:
    """The key prefixes of ``count`` records chosen with a fixed seed (all of them if there are fewer)."""
    if len(records) <= count:
        return key_columns(records)[0]
    chosen = np.random.default_rng(SAMPLE_SEED).choice(len(records), count, replace=False)
    return key_columns(records[chosen])[0]


def ts_splitters(samples: list[U64], partitions: int) -> U64:
    """``partitions - 1`` key prefixes cutting the pooled samples into equal ranges."""
    pooled = np.sort(np.concatenate(samples))
    if len(pooled) == 0:
        return np.zeros(partitions - 1, dtype=np.uint64)
    return pooled[(np.arange(1, partitions) * len(pooled)) // partitions]


def ts_partition(records: U8, splitters: U64) -> list[U8]:
    """Records split into ``len(splitters) + 1`` key ranges (partition r holds prefixes in
    ``[splitters[r-1], splitters[r])``)."""
    pid = np.searchsorted(splitters, key_columns(records)[0], side="right")
    order = np.argsort(pid, kind="stable")
    ordered = records[order]
    bounds = np.searchsorted(pid[order], np.arange(len(splitters) + 2))
    return [ordered[bounds[r] : bounds[r + 1]] for r in range(len(splitters) + 1)]


def ts_sort(*parts: U8) -> U8:
    """One partition's parts, concatenated and sorted by the whole key."""
    records = np.concatenate(parts) if parts else np.empty((0, RECORD_BYTES), dtype=np.uint8)
    prefix, tail = key_columns(records)
    return records[np.lexsort((tail, prefix))]


# 25 odd 64-bit multipliers, one per 4-byte word of a record (fixed: they are part of the checksum's definition)
_WORD_MULTIPLIERS = (np.random.default_rng(20261207).integers(0, 1 << 62, size=25, dtype=np.uint64) * 2 + 1).astype(
    np.uint64
)


def record_checksum(records: U8) -> int:
    """The checksum of a set of 100-byte records: the sum mod 2**64 of a 64-bit hash of each record.

    Independent of the records' order (a sort keeps it), but a lost, duplicated or altered record — or two
    records exchanging bytes — changes it. Each record's hash mixes its 25 little-endian 32-bit words with fixed
    odd multipliers and finishes with a murmur3 fmix64, so the sum is not linear in the bytes.
    """
    if len(records) == 0:
        return 0
    words = np.ascontiguousarray(records).view("<u4").reshape(-1, RECORD_BYTES // 4).astype(np.uint64)
    with np.errstate(over="ignore"):
        h = (words * _WORD_MULTIPLIERS).sum(axis=1, dtype=np.uint64)
        h ^= h >> np.uint64(33)
        h *= np.uint64(0xFF51AFD7ED558CCD)
        h ^= h >> np.uint64(33)
        h *= np.uint64(0xC4CEB9FE1A85EC53)
        h ^= h >> np.uint64(33)
    # sum of uint64 wraps mod 2**64 in numpy
    return int(h.sum(dtype=np.uint64))


@dataclass(frozen=True)
class SortedSummary:
    """What a sorted partition tells the order check without being read again: its size, its first and last
    keys, and its records' checksum."""

    records: int
    first_key: bytes
    last_key: bytes
    checksum: int


def ts_in_order(records: U8) -> bool:
    """Every key >= the one before it."""
    prefix, tail = key_columns(records)
    down = (prefix[1:] < prefix[:-1]) | ((prefix[1:] == prefix[:-1]) & (tail[1:] < tail[:-1]))
    return not bool(down.any())


def ts_summary(records: U8) -> SortedSummary:
    if len(records) == 0:
        return SortedSummary(0, b"", b"", 0)
    return SortedSummary(len(records), bytes(records[0, :10]), bytes(records[-1, :10]), record_checksum(records))


def ts_check(summaries: list[SortedSummary]) -> tuple[int, int, bool]:
    """Partitions' summaries in partition order -> (records, checksum of all, partitions in key order?)."""
    nonempty = [s for s in summaries if s.records]
    ordered = all(a.last_key <= b.first_key for a, b in itertools.pairwise(nonempty))
    return sum(s.records for s in summaries), sum(s.checksum for s in summaries) % (1 << 64), ordered


def _read_records(path: str) -> U8:
    return np.fromfile(path, dtype=np.uint8).reshape(-1, RECORD_BYTES)


def ts_sample(path: str) -> U64:
    return ts_sample_keys(_read_records(path))


def ts_map(path: str, splitters: U64) -> list[U8]:
    return ts_partition(_read_records(path), splitters)


def ts_reduce(partition: int, out_dir: str, *parts: U8) -> int:
    """The reduce task: sort, write ``out_dir/part-RR.dat``; returns the records written."""
    records = ts_sort(*parts)
    os.makedirs(out_dir, exist_ok=True)
    records.tofile(os.path.join(out_dir, f"part-{partition:02d}.dat"))
    return len(records)
