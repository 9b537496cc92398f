"""Ray, the way it ran fastest on a 2-core machine: a local Ray started by the driver with 2 CPUs, no dashboard,
no usage statistics, its logs kept out of the driver's output, listening on 127.0.0.1.

* ``noop``: ``--tasks`` (20,000) remote calls of :func:`tasks.noop`, all submitted, then ``ray.get`` of all —
  tasks per second. The worker pool is warmed first (200 calls), as a long-running Ray would be.
* ``wordcount``: map ``wc_map`` with ``num_returns=R`` (each bucket a separate object, so a reducer fetches
  only its own), reduce ``wc_reduce(r, out, *the r-th bucket of every map)``; MB/s of input.

``python -m feitian.bench.dagpeers.ray_peer noop|wordcount --out DIR [--input DIR] [--reps N]``; Ray's
startup is not in the figures.
"""

from __future__ import annotations

import os
import time
from typing import Any

from feitian.bench.dagpeers import tasks
from feitian.bench.dagpeers.driver import WORKERS, DriverArgs, check_output, driver_main, emit, input_bytes, require

__all__ = ["object_store_bytes", "run"]

WARM_UP_TASKS = 200
MIN_OBJECT_STORE = 256 << 20
MAX_OBJECT_STORE = 4 << 30  # what the full-size wordcount was measured with


def object_store_bytes(args: DriverArgs) -> int:
    """Room for every map output at once (4x the input), within Ray's useful range."""
    need = 4 * input_bytes(args) if args.manifest is not None else 0
    return min(MAX_OBJECT_STORE, max(MIN_OBJECT_STORE, need))


def run(args: DriverArgs) -> None:
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    os.environ.setdefault("RAY_AUTH_MODE", "disabled")  # loopback only; no token written under ~/.ray
    ray = require("ray")
    ray.init(
        num_cpus=WORKERS,
        include_dashboard=False,
        log_to_driver=False,
        _node_ip_address="127.0.0.1",
        object_store_memory=object_store_bytes(args),
    )
    try:
        noop = ray.remote(tasks.noop)
        ray.get([noop.remote(i) for i in range(WARM_UP_TASKS)])
        for rep in range(args.reps):
            if args.figure == "noop":
                _noop(ray, noop, args, rep)
            else:
                _wordcount(ray, args, rep)
    finally:
        ray.shutdown()


def _noop(ray: Any, noop: Any, args: DriverArgs, rep: int) -> None:
    t0 = time.perf_counter()
    ray.get([noop.remote(i) for i in range(args.tasks)])
    seconds = time.perf_counter() - t0
    emit("ray", "noop", rep, seconds, tasks=args.tasks, tasks_per_s=round(args.tasks / seconds), ray=ray.__version__)


def _wordcount(ray: Any, args: DriverArgs, rep: int) -> None:
    r = args.partitions
    wc_map = ray.remote(num_returns=r)(tasks.wc_map)
    wc_reduce = ray.remote(tasks.wc_reduce)
    nbytes = input_bytes(args)
    t0 = time.perf_counter()
    maps = [wc_map.remote(path, r) for path in args.files]
    if r == 1:  # num_returns=1 gives one reference, not a list of one
        maps = [[m] for m in maps]
    ray.get([wc_reduce.remote(k, args.out_dir, *[m[k] for m in maps]) for k in range(r)])
    seconds = time.perf_counter() - t0
    del maps
    checked = check_output(args)
    emit(
        "ray",
        "wordcount",
        rep,
        seconds,
        MBps=round(nbytes / seconds / 1e6, 1),
        partitions=r,
        ray=ray.__version__,
        **checked,
    )


if __name__ == "__main__":
    driver_main("ray", ["noop", "wordcount"], run)
