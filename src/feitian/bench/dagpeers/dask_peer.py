"""Dask distributed, the way it ran fastest on a 2-core machine: ``LocalCluster`` of 2 worker processes with
1 thread each, on 127.0.0.1, no dashboard, and the client in the driver.

* ``noop``: ``client.map(noop, range(--tasks), pure=False)`` then ``gather`` — tasks per second. With the
  scheduler's ``worker-saturation`` at ``inf`` (no queuing of root tasks on the scheduler), which made trivial
  tasks about 2.5x faster than the default 1.1 on this kind of machine.
* ``wordcount`` (the map-reduce variant): one graph of map ``wc_map`` → ``getitem`` per bucket → reduce
  ``wc_reduce``; MB/s of input. (``dask.bag``'s ``frequencies`` was slower.)
* ``terasort`` (the numpy ``delayed``-style variant): one graph of ``ts_sample`` per input → ``ts_splitters``
  → ``ts_map`` per input → ``getitem`` per partition → ``ts_reduce`` (lexsort + write); MB/s of input.
  (``dask.dataframe``'s ``sort_values`` was slower.)

The graphs are plain task dictionaries submitted with ``client.get``. ``python -m
feitian.bench.dagpeers.dask_peer noop|wordcount|terasort --out DIR [--input DIR] [--reps N]``; the cluster's
startup is not in the figures.
"""

from __future__ import annotations

import operator
import time
from typing import Any

from feitian.bench.dagpeers import tasks
from feitian.bench.dagpeers.driver import WORKERS, DriverArgs, check_output, driver_main, emit, input_bytes, require

__all__ = ["NOOP_WORKER_SATURATION", "run"]

NOOP_WORKER_SATURATION = float("inf")


def run(args: DriverArgs) -> None:
    dask = require("dask")
    distributed = require("distributed")
    if args.figure == "noop":  # read by the scheduler when it starts
        dask.config.set({"distributed.scheduler.worker-saturation": NOOP_WORKER_SATURATION})
    cluster = distributed.LocalCluster(
        n_workers=WORKERS,
        threads_per_worker=1,
        processes=True,
        host="127.0.0.1",
        dashboard_address=None,
        silence_logs=40,  # logging.ERROR
    )
    client = distributed.Client(cluster)
    # the setting in force, stated in every figure (the scheduler runs in this process)
    settings = {
        "worker_saturation": str(getattr(cluster.scheduler, "WORKER_SATURATION", "unknown")),
        "dask": dask.__version__,
        "distributed": distributed.__version__,
    }
    try:
        client.wait_for_workers(WORKERS)
        client.gather(client.map(tasks.noop, range(2 * WORKERS), pure=False))  # workers import the bodies
        for rep in range(args.reps):
            {"noop": _noop, "wordcount": _wordcount, "terasort": _terasort}[args.figure](client, args, rep, settings)
    finally:
        client.close()
        cluster.close()


def _noop(client: Any, args: DriverArgs, rep: int, settings: dict[str, str]) -> None:
    t0 = time.perf_counter()
    futures = client.map(tasks.noop, range(args.tasks), pure=False)
    client.gather(futures)
    seconds = time.perf_counter() - t0
    del futures
    emit(
        "dask",
        "noop",
        rep,
        seconds,
        tasks=args.tasks,
        tasks_per_s=round(args.tasks / seconds),
        **settings,
    )


def _wordcount(client: Any, args: DriverArgs, rep: int, settings: dict[str, str]) -> None:
    r, files = args.partitions, args.files
    graph: dict[Any, Any] = {}
    for i, path in enumerate(files):
        graph[("map", i)] = (tasks.wc_map, path, r)
        for k in range(r):
            graph[("bucket", i, k)] = (operator.getitem, ("map", i), k)
    for k in range(r):
        graph[("reduce", k)] = (tasks.wc_reduce, k, args.out_dir, *[("bucket", i, k) for i in range(len(files))])
    nbytes = input_bytes(args)
    t0 = time.perf_counter()
    client.get(graph, [("reduce", k) for k in range(r)])
    seconds = time.perf_counter() - t0
    checked = check_output(args)
    emit(
        "dask",
        "wordcount",
        rep,
        seconds,
        MBps=round(nbytes / seconds / 1e6, 1),
        partitions=r,
        **settings,
        **checked,
    )


def _terasort(client: Any, args: DriverArgs, rep: int, settings: dict[str, str]) -> None:
    r, files = args.partitions, args.files
    graph: dict[Any, Any] = {}
    for i, path in enumerate(files):
        graph[("sample", i)] = (tasks.ts_sample, path)
    graph["splitters"] = (tasks.ts_splitters, [("sample", i) for i in range(len(files))], r)
    for i, path in enumerate(files):
        graph[("map", i)] = (tasks.ts_map, path, "splitters")
        for k in range(r):
            graph[("part", i, k)] = (operator.getitem, ("map", i), k)
    for k in range(r):
        graph[("reduce", k)] = (tasks.ts_reduce, k, args.out_dir, *[("part", i, k) for i in range(len(files))])
    nbytes = input_bytes(args)
    t0 = time.perf_counter()
    client.get(graph, [("reduce", k) for k in range(r)])
    seconds = time.perf_counter() - t0
    checked = check_output(args)
    emit(
        "dask",
        "terasort",
        rep,
        seconds,
        MBps=round(nbytes / seconds / 1e6, 1),
        partitions=r,
        **settings,
        **checked,
    )


if __name__ == "__main__":
    driver_main("dask", ["noop", "wordcount", "terasort"], run)
