"""The one-process baseline: the same task bodies with no framework, one after the other in this process —
the floor a framework must beat with two workers on two cores.

* ``wordcount``: ``wc_map`` of every input, then ``wc_reduce`` of every partition.
* ``terasort``: read every input into one array, sort it by the whole key (``lexsort`` on the 8-byte prefix and
  the last two bytes — of the key orders tried on this kind of machine, argsort on an ``S10`` or ``V10`` view and
  lexsort, the fastest), and write it as R equal range partitions.

``python -m feitian.bench.dagpeers.single wordcount|terasort --input DIR --out DIR [--reps N]``.
"""

from __future__ import annotations

import os
import time

import numpy as np

from feitian.bench.dagpeers import tasks
from feitian.bench.dagpeers.driver import DriverArgs, check_output, driver_main, emit, input_bytes

__all__ = ["run"]


def run(args: DriverArgs) -> None:
    for rep in range(args.reps):
        (_wordcount if args.figure == "wordcount" else _terasort)(args, rep)


def _wordcount(args: DriverArgs, rep: int) -> None:
    r, nbytes = args.partitions, input_bytes(args)
    t0 = time.perf_counter()
    maps = [tasks.wc_map(path, r) for path in args.files]
    for k in range(r):
        tasks.wc_reduce(k, args.out_dir, *[m[k] for m in maps])
    seconds = time.perf_counter() - t0
    del maps
    checked = check_output(args)
    emit("single", "wordcount", rep, seconds, MBps=round(nbytes / seconds / 1e6, 1), partitions=r, **checked)


def _terasort(args: DriverArgs, rep: int) -> None:
    r, nbytes = args.partitions, input_bytes(args)
    t0 = time.perf_counter()
    records = np.concatenate([np.fromfile(p, dtype=np.uint8).reshape(-1, tasks.RECORD_BYTES) for p in args.files])
    ordered = tasks.ts_sort(records)
    del records
    os.makedirs(args.out_dir, exist_ok=True)
    n = len(ordered)
    for k in range(r):
        ordered[k * n // r : (k + 1) * n // r].tofile(os.path.join(args.out_dir, f"part-{k:02d}.dat"))
    seconds = time.perf_counter() - t0
    del ordered
    checked = check_output(args)
    emit("single", "terasort", rep, seconds, MBps=round(nbytes / seconds / 1e6, 1), partitions=r, **checked)


if __name__ == "__main__":
    driver_main("single", ["wordcount", "terasort"], run)
