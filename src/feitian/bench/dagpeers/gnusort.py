"""GNU sort on the terasort input: ``LC_ALL=C sort --parallel=2 -S BUFFER -T TMP -o OUT FILES…``.

The keys are printable ASCII, so byte order under ``LC_ALL=C`` is key order and sorting whole lines sorts by
key. The buffer holds the whole input in memory (4x the input, at most 4 GiB: the reference's ``-S 4G`` at
1 GB), so the figure is one in-memory sort with 2 threads, as fast as sort goes here. Its output is one sorted
file (not range-partitioned); it is checked like every other terasort output.

``python -m feitian.bench.dagpeers.gnusort terasort --input DIR --out DIR [--reps N]``.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import time

from feitian.bench.dagpeers.driver import WORKERS, DriverArgs, check_output, driver_main, emit, input_bytes

__all__ = ["buffer_bytes", "run"]

MIN_BUFFER = 64 << 20
MAX_BUFFER = 4 << 30


def buffer_bytes(nbytes: int) -> int:
    return min(MAX_BUFFER, max(MIN_BUFFER, 4 * nbytes))


def run(args: DriverArgs) -> None:
    sort = shutil.which("sort")
    if sort is None:
        raise FileNotFoundError("GNU sort is not on PATH (coreutils)")
    nbytes = input_bytes(args)
    buffer = buffer_bytes(nbytes)
    version = subprocess.run([sort, "--version"], capture_output=True, text=True).stdout.partition("\n")[0]
    for rep in range(args.reps):
        tmp = os.path.join(args.out_dir, "tmp")
        out = os.path.join(args.out_dir, "sorted.dat")
        os.makedirs(tmp, exist_ok=True)
        command = [sort, f"--parallel={WORKERS}", "-S", f"{buffer // 1024}K", "-T", tmp, "-o", out, *args.files]
        t0 = time.perf_counter()
        subprocess.run(command, check=True, env={**os.environ, "LC_ALL": "C"})
        seconds = time.perf_counter() - t0
        checked = check_output(args, [out])
        emit(
            "gnusort",
            "terasort",
            rep,
            seconds,
            MBps=round(nbytes / seconds / 1e6, 1),
            parallel=WORKERS,
            buffer_bytes=buffer,
            sort=version,
            **checked,
        )


if __name__ == "__main__":
    driver_main("gnusort", ["terasort"], run)
