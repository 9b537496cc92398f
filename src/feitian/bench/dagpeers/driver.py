"""What every peer driver shares: its command line, how it prints a figure, and how it checks and cleans.

A driver is ``python -m feitian.bench.dagpeers.PEER FIGURE --input DIR --out DIR [--reps N] [--tasks N]
[--partitions R]``. For each repetition it runs the figure, checks the output against the input's manifest
(:mod:`feitian.bench.dagpeers.verify`, outside the timed window), deletes the output, and prints one JSON object
on a line of stdout: ``{"peer", "figure", "rep", "seconds", "MBps" | "tasks_per_s", ...}``. Anything else it
or its framework prints goes to stderr. A failed check ends the driver with exit code 1 and ``error:`` on stderr.
"""

from __future__ import annotations

import argparse
import importlib
import importlib.util
import json
import os
import shutil
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from feitian.bench.dagpeers.data import Manifest, input_files, load_manifest
from feitian.bench.dagpeers.verify import OutputError, check_terasort, check_wordcount, output_files

__all__ = [
    "DEFAULT_TASKS",
    "INSTALL_HINT",
    "PACKAGES",
    "WORKERS",
    "DriverArgs",
    "MissingPackageError",
    "check_output",
    "driver_main",
    "emit",
    "input_bytes",
    "missing_packages",
    "require",
]

WORKERS = 2  # worker processes of every framework: the two cores of the benchmark machine
DEFAULT_TASKS = 20_000
WORDCOUNT_PARTITIONS = 4
TERASORT_PARTITIONS = 16
PACKAGES = {"ray": ["ray"], "dask": ["dask", "distributed"], "gnusort": [], "single": []}
INSTALL_HINT = "pip install 'feitian[bench]'"


class MissingPackageError(Exception):
    def __init__(self, module: str) -> None:
        super().__init__(f"{module} is not installed ({INSTALL_HINT})")
        self.module = module


def missing_packages(peer: str) -> list[str]:
    """The Python packages ``peer`` needs that are not installed here (without importing them)."""
    return [m for m in PACKAGES.get(peer, []) if importlib.util.find_spec(m) is None]


def require(module: str) -> Any:
    """``import module`` (typed Any: the peers' frameworks are optional and their types vary by version)."""
    try:
        return importlib.import_module(module)
    except ImportError as exc:
        raise MissingPackageError(module) from exc


@dataclass(frozen=True)
class DriverArgs:
    figure: str
    input_dir: str
    out_dir: str
    reps: int
    tasks: int
    partitions: int
    manifest: Manifest | None  # None for the noop figure (it reads no input)

    @property
    def files(self) -> list[str]:
        assert self.manifest is not None
        return input_files(self.input_dir, self.manifest)


def emit(peer: str, figure: str, rep: int, seconds: float, **fields: Any) -> None:
    sys.stdout.write(json.dumps({"peer": peer, "figure": figure, "rep": rep, "seconds": round(seconds, 3), **fields}))
    sys.stdout.write("\n")
    sys.stdout.flush()


def check_output(args: DriverArgs, paths: list[str] | None = None) -> dict[str, int]:
    """Check the run's output against the manifest (``paths``: terasort's files in key order, default: the
    output directory's partitions), then delete it."""
    assert args.manifest is not None
    try:
        if args.figure == "wordcount":
            return check_wordcount(args.out_dir, args.manifest)
        return check_terasort(paths if paths is not None else output_files(args.out_dir, ".dat"), args.manifest)
    finally:
        shutil.rmtree(args.out_dir, ignore_errors=True)


def driver_main(peer: str, figures: Sequence[str], run: Callable[[DriverArgs], None]) -> None:
    """Parse the command line and ``run`` the figure (its repetitions, with the framework's setup around them);
    exit 1 with ``error:`` on a failed check or a missing package."""
    ap = argparse.ArgumentParser(prog=f"python -m feitian.bench.dagpeers.{peer}")
    ap.add_argument("figure", choices=list(figures))
    ap.add_argument("--input", dest="input_dir", default="", help="the data set's directory (not for noop)")
    ap.add_argument("--out", dest="out_dir", required=True, help="output directory (deleted after each check)")
    ap.add_argument("--reps", type=int, default=1)
    ap.add_argument("--tasks", type=int, default=DEFAULT_TASKS, help="no-op tasks")
    ap.add_argument("--partitions", type=int, default=0, help="reduce partitions (wordcount 4, terasort 16)")
    ns = ap.parse_args()
    default_partitions = WORDCOUNT_PARTITIONS if ns.figure == "wordcount" else TERASORT_PARTITIONS
    try:
        args = DriverArgs(
            figure=ns.figure,
            input_dir=ns.input_dir,
            out_dir=ns.out_dir,
            reps=max(1, ns.reps),
            tasks=ns.tasks,
            partitions=ns.partitions or default_partitions,
            manifest=load_manifest(ns.input_dir) if ns.figure != "noop" else None,
        )
    except (OSError, ValueError, TypeError) as exc:
        sys.stderr.write(f"error: {peer} {ns.figure}: no data set in {ns.input_dir!r}: {exc}\n")
        sys.exit(1)
    shutil.rmtree(args.out_dir, ignore_errors=True)
    try:
        run(args)
    except (OutputError, MissingPackageError) as exc:
        sys.stderr.write(f"error: {peer} {args.figure}: {exc}\n")
        sys.exit(1)
    except Exception as exc:  # the framework failed: the runner reports this line
        sys.stderr.write(f"error: {peer} {args.figure}: {type(exc).__name__}: {exc}\n")
        sys.exit(1)
    finally:
        shutil.rmtree(args.out_dir, ignore_errors=True)


def input_bytes(args: DriverArgs) -> int:
    return sum(os.path.getsize(f) for f in args.files)
