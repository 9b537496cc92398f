"""``python -m feitian.bench.streamline [--mib N] [--json]``: streamline's vectorized operators, one process.

Figures, in MB/s of input bytes (text, records), on one core:

* ``tokenize_count``: words of a text buffer and their counts (numpy + one Arrow hash pass);
* ``python_counter``: the same text with the peers' task body (``Counter(data.split())``), for the ratio;
* ``wordcount``: the vectorized wordcount of a text file through streamline: text splits read with Hadoop's
  boundaries, tokenized, counted, hash-partitioned into 4 by a :class:`PartitionedWriter` (committed), read back
  per partition, combined and written as ``word\\tcount`` lines;
* ``hash_partition``: partition ids (the stable hash) and the grouping of a key/value batch into 4 partitions;
* ``terasort_range_sort``: 100-byte records range-partitioned on the key prefix and sorted (numpy);
* ``terasort_streamline``: the same records through streamline: two writers range-partition and sort them into 4
  committed partitions, each partition is merged back from both and turned into records again;
* ``spill_merge``: key/value records through a sorted writer under a 4 MiB bound (spills, k-way merge, commit).

The text is a Zipf-distributed vocabulary of 50,000 words, like the DAG peers' wordcount input; records are
gensort-like (10-byte printable keys). Each figure is the best of three runs. Inputs are generated in memory and
in a temporary directory, deleted after. Indicative only: run it on a quiet machine (``--mib`` sets the input size).
"""

from __future__ import annotations

import argparse
import json
import random
import tempfile
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa

from feitian.base.units import MiB
from feitian.job.streamline import (
    OutputStore,
    PartitionedWriter,
    Partitioning,
    StreamlineConfig,
    combine_counts,
    count_words,
    format_tsv,
    hash_partition_ids,
    kv_batch,
    kv_to_records,
    range_sort,
    read_partition,
    read_text_split,
    record_array,
    records_to_kv,
    sample_splitters,
    tokenize,
)

PARTITIONS = 4
SPLIT_BYTES = 8 * MiB


def make_text(size: int, seed: int = 0) -> bytes:
    rng = random.Random(seed)
    letters = "abcdefghijklmnopqrstuvwxyz"
    vocab = ["".join(rng.choice(letters) for _ in range(rng.randint(2, 10))).encode() for _ in range(50_000)]
    nrng = np.random.default_rng(seed)
    idx = np.minimum(nrng.zipf(1.2, size=400_000), len(vocab)) - 1
    lines = [b" ".join(vocab[i] for i in idx[j : j + 12]) for j in range(0, len(idx), 12)]
    chunk = b"\n".join(lines) + b"\n"
    return (chunk * (size // len(chunk) + 1))[:size].rsplit(b"\n", 1)[0] + b"\n"


def make_records(size: int, seed: int = 1) -> bytes:
    n = size // 100
    rng = np.random.default_rng(seed)
    rec = np.empty((n, 100), dtype=np.uint8)
    rec[:, :10] = rng.integers(32, 127, size=(n, 10), dtype=np.uint8)
    rec[:, 10:] = rng.integers(0, 256, size=(n, 90), dtype=np.uint8)
    return rec.tobytes()


def timed(fn: Callable[[], object], nbytes: int, reps: int = 3) -> float:
    """MB/s of the best of ``reps`` runs (the first run also pays for warming caches and Arrow's kernels)."""
    best = float("inf")
    for _ in range(reps):
        started = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - started)
    return nbytes / 1e6 / best


def wordcount(path: Path, size: int, root: Path) -> int:
    store = OutputStore(root)
    config = StreamlineConfig(memory_bytes=64 * MiB)
    instances = 0
    for instance, start in enumerate(range(0, size, SPLIT_BYTES)):
        w = PartitionedWriter(store, "wc", instance, 0, Partitioning.hash(PARTITIONS), config)
        w.write(count_words(tokenize(read_text_split(path, start, SPLIT_BYTES))))
        w.close()
        instances += 1
    out = 0
    for j in range(PARTITIONS):
        counts = combine_counts(read_partition(store, "wc", range(instances), j))
        out += len(format_tsv(counts))
    return out


def measure(size: int) -> dict[str, Any]:
    text = make_text(size)
    figures: dict[str, Any] = {"input_MiB": round(len(text) / MiB, 1)}
    figures["tokenize_count_MBps"] = timed(lambda: count_words(tokenize(text)), len(text))
    figures["python_counter_MBps"] = timed(lambda: Counter(text.split()), len(text))
    with tempfile.TemporaryDirectory(prefix="streamline-bench-") as tmp:
        path = Path(tmp) / "text.txt"
        path.write_bytes(text)
        runs = iter(range(1000))
        figures["wordcount_MBps"] = timed(lambda: wordcount(path, len(text), Path(tmp) / f"wc{next(runs)}"), len(text))

        words = tokenize(text)
        n = len(words)
        offsets = pa.py_buffer((np.arange(n + 1) * 8).astype(np.int32))
        values = pa.Array.from_buffers(pa.binary(), n, [None, offsets, pa.py_buffer(np.ones(8 * n, np.uint8))])
        kv = kv_batch(words, values)  # each word with an 8-byte value, like a count
        kv_bytes = kv.nbytes

        def partition() -> None:
            ids = hash_partition_ids(kv.column(0), PARTITIONS)
            order = np.argsort(ids, kind="stable")
            kv.take(pa.array(order))

        figures["hash_partition_MBps"] = timed(partition, kv_bytes)

        records = record_array(make_records(size))
        splitters = sample_splitters(records, PARTITIONS)
        figures["terasort_range_sort_MBps"] = timed(lambda: range_sort(records, splitters), records.nbytes)

        def terasort() -> None:
            # two producer instances (halves of the input) into 4 sorted range partitions, then each partition
            # merged back from both: the map and reduce sides of terasort through streamline, on one core
            attempt = next(runs)
            ts_store = OutputStore(Path(tmp) / "ts")
            half = len(records) // 2
            for instance, part in enumerate((records[:half], records[half:])):
                w = PartitionedWriter(ts_store, "ts", instance, attempt, Partitioning.range(splitters), config_64)
                for start in range(0, len(part), 100_000):
                    w.write(records_to_kv(part[start : start + 100_000]))
                w.close()
            for j in range(PARTITIONS):
                for batch in read_partition(ts_store, "ts", [0, 1], j, sort=True):
                    kv_to_records(batch)
            ts_store.remove("ts")

        config_64 = StreamlineConfig(memory_bytes=64 * MiB)
        figures["terasort_streamline_MBps"] = timed(terasort, records.nbytes)

        config = StreamlineConfig(memory_bytes=4 * MiB, block_bytes=256 << 10)
        store = OutputStore(Path(tmp) / "spill")
        pieces = [kv.slice(i, 100_000) for i in range(0, kv.num_rows, 100_000)]

        def spill_merge() -> None:
            w = PartitionedWriter(store, "sm", 0, next(runs), Partitioning.hash(PARTITIONS, sort=True), config)
            for piece in pieces:
                w.write(piece)
            w.close()
            figures["spill_merge_spills"] = w.stats.spills
            figures["spill_merge_passes"] = w.stats.merge_passes

        figures["spill_merge_MBps"] = timed(spill_merge, kv_bytes)
    return {k: round(v, 1) if isinstance(v, float) else v for k, v in figures.items()}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m feitian.bench.streamline", description=__doc__.split("\n")[0])
    parser.add_argument("--mib", type=int, default=64, help="input size in MiB (default 64)")
    parser.add_argument("--json", action="store_true", help="one JSON object instead of lines")
    args = parser.parse_args(argv)
    if not 1 <= args.mib <= 4096:
        parser.error("--mib must be in 1..4096")
    figures = measure(args.mib * MiB)
    if args.json:
        print(json.dumps(figures))
    else:
        for name, value in figures.items():
            print(f"{name:28} {value}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
