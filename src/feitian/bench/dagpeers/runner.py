"""Run the DAG peers on one machine, in one invocation: each (peer, figure) in a process of its own.

The inputs are generated once per (kind, size, seed) under ``root`` and reused by later runs
(:func:`feitian.bench.dagpeers.data.ensure_dataset`). Then, figure by figure, each selected peer's driver runs
as ``python -m feitian.bench.dagpeers.MODULE FIGURE …`` in a new process group, its stdout read for figures
and its stderr written to ``root/logs/PEER-FIGURE.log``. A driver that exits non-zero is reported ``failed``
(with its ``error:`` line); one still running after ``timeout_s`` is reported ``timeout``. Whatever the end,
anything left of its process group gets SIGTERM, then SIGKILL after ``KILL_GRACE_S`` (so Ray's and Dask's
worker processes never outlive their driver). The benchmark goes on to the next peer, and the peer's output
directory is deleted.

Of a peer's repetitions, the best is its figure (highest MB/s or tasks/s): no peer is shown slower than it ran.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from typing import Any

from feitian.bench.dagpeers.data import DEFAULT_SEED, ensure_dataset
from feitian.bench.dagpeers.driver import DEFAULT_TASKS, INSTALL_HINT, missing_packages

__all__ = [
    "FIGURES",
    "PEERS",
    "DagPeersOptions",
    "MissingPeersError",
    "default_root",
    "print_table",
    "run_dag_peers",
]

# figure -> the peers that run it, in the order they run
FIGURES: dict[str, tuple[str, ...]] = {
    "noop": ("ray", "dask"),
    "wordcount": ("ray", "dask", "single"),
    "terasort": ("dask", "gnusort", "single"),
}
PEERS = ("ray", "dask", "gnusort", "single")
MODULES = {"ray": "ray_peer", "dask": "dask_peer", "gnusort": "gnusort", "single": "single"}
UNITS = {"noop": "tasks_per_s", "wordcount": "MBps", "terasort": "MBps"}
WORDCOUNT_BYTES = 512 << 20  # the 512 MiB of text
TERASORT_BYTES = 10**9  # the 1 GB: 10,000,000 records
KILL_GRACE_S = 10.0
GROUP_POLL_S = 0.05
LOG_TAIL_LINES = 5

Say = Callable[[str], None]


def default_root() -> str:
    return os.path.join(tempfile.gettempdir(), "feitian-dagpeers")


class MissingPeersError(Exception):
    """A selected peer's framework is not installed."""

    def __init__(self, missing: dict[str, list[str]]) -> None:
        names = sorted({m for modules in missing.values() for m in modules})
        peers = ", ".join(sorted(missing))
        super().__init__(f"{', '.join(names)} not installed (needed by the {peers} peer{'s' * (len(missing) > 1)})")
        self.missing = missing
        self.hint = f"{INSTALL_HINT}, or leave the peer out with --peers / run with --skip-missing"


@dataclass(frozen=True)
class DagPeersOptions:
    what: tuple[str, ...] = tuple(FIGURES)
    peers: tuple[str, ...] = PEERS
    wordcount_bytes: int = WORDCOUNT_BYTES
    terasort_bytes: int = TERASORT_BYTES
    tasks: int = DEFAULT_TASKS
    reps: int = 1
    root: str = field(default_factory=default_root)
    timeout_s: float | None = None  # per peer run; None: 120 s + 60 s per repetition and 100 MB of input
    seed: int = DEFAULT_SEED
    skip_missing: bool = False  # report a peer whose framework is missing as skipped, instead of failing
    drop_inputs: bool = False  # delete the generated inputs at the end

    def timeout_for(self, figure: str) -> float:
        if self.timeout_s is not None:
            return self.timeout_s
        size = {"noop": 0, "wordcount": self.wordcount_bytes, "terasort": self.terasort_bytes}[figure]
        return 120.0 + self.reps * 60.0 * (1 + size / 100e6)


def _best(figure: str, runs: list[dict[str, Any]]) -> dict[str, Any] | None:
    unit = UNITS[figure]
    return max(runs, key=lambda r: float(r.get(unit, 0))) if runs else None


def _log_tail(path: str) -> str:
    with contextlib.suppress(OSError), open(path, errors="replace") as f:
        lines = [line.rstrip() for line in f if line.strip()]
        errors = [line for line in lines if line.startswith("error:")]
        return errors[-1] if errors else " | ".join(lines[-LOG_TAIL_LINES:])
    return ""


def _group_alive(pgid: int) -> bool:
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # a member we may not signal: it exists
        return True
    return True


def _end_group(proc: subprocess.Popen[bytes]) -> None:
    """End the driver's process group (its own, made at start): the driver if it still runs, and whatever it
    left behind (a framework's workers). SIGTERM, then SIGKILL after the grace period."""
    pgid = proc.pid
    for sig in (signal.SIGTERM, signal.SIGKILL):
        if proc.poll() is not None and not _group_alive(pgid):
            return
        with contextlib.suppress(ProcessLookupError):
            os.killpg(pgid, sig)
        with contextlib.suppress(subprocess.TimeoutExpired):
            proc.wait(timeout=KILL_GRACE_S)
        deadline = time.monotonic() + KILL_GRACE_S
        while _group_alive(pgid) and time.monotonic() < deadline:
            time.sleep(GROUP_POLL_S)  # the members are not our children: nothing to wait on


def run_driver(
    peer: str, figure: str, argv: list[str], out_dir: str, log_path: str, timeout_s: float
) -> dict[str, Any]:
    """One driver process; its figures, or why it has none."""
    command = [sys.executable, "-m", f"feitian.bench.dagpeers.{MODULES[peer]}", figure, "--out", out_dir, *argv]
    row: dict[str, Any] = {"peer": peer, "figure": figure}
    with open(log_path, "wb") as log:
        proc = subprocess.Popen(
            command, stdout=subprocess.PIPE, stderr=log, stdin=subprocess.DEVNULL, start_new_session=True
        )
        try:
            stdout, _ = proc.communicate(timeout=timeout_s)
        except subprocess.TimeoutExpired:
            stdout = b""
            row.update(status="timeout", error=f"no result after {timeout_s:.0f} s (stopped; log: {log_path})")
        finally:
            _end_group(proc)
            shutil.rmtree(out_dir, ignore_errors=True)
    runs = []
    for line in stdout.decode(errors="replace").splitlines():
        with contextlib.suppress(ValueError):
            obj = json.loads(line)
            if isinstance(obj, dict) and obj.get("figure") == figure:
                runs.append(obj)
    if "status" not in row:
        if proc.returncode != 0 or not runs:
            row.update(status="failed", error=_log_tail(log_path) or f"exit code {proc.returncode}", log=log_path)
        else:
            row["status"] = "ok"
    row["runs"] = runs
    row["driver_pid"] = proc.pid  # also its process group's id
    row["best"] = _best(figure, runs) if row["status"] == "ok" else None
    return row


def run_dag_peers(opts: DagPeersOptions, progress: Say | None = None) -> dict[str, Any]:
    """Every selected (figure, peer) once (with ``opts.reps`` repetitions); a dict of inputs and rows."""
    say = progress or (lambda _m: None)
    selected = {f: [p for p in FIGURES[f] if p in opts.peers] for f in opts.what}
    missing = {p: m for p in {p for ps in selected.values() for p in ps} if (m := missing_packages(p))}
    if missing and not opts.skip_missing:
        raise MissingPeersError(missing)
    os.makedirs(os.path.join(opts.root, "logs"), exist_ok=True)
    inputs: dict[str, Any] = {}
    rows: list[dict[str, Any]] = []
    try:
        for figure, peers in selected.items():
            argv = ["--reps", str(opts.reps)]
            if figure == "noop":
                argv += ["--tasks", str(opts.tasks)]
                inputs["noop"] = {"tasks": opts.tasks}
            else:
                size = opts.wordcount_bytes if figure == "wordcount" else opts.terasort_bytes
                say(f"input {figure}: {size / 1e6:.1f} MB under {opts.root}")
                directory, manifest = ensure_dataset(opts.root, figure, size, opts.seed)
                argv += ["--input", directory]
                inputs[figure] = {"directory": directory, **asdict(manifest)}
            for peer in peers:
                if peer in missing:
                    rows.append(
                        {"peer": peer, "figure": figure, "status": "skipped", "error": missing_text(missing[peer])}
                    )
                    continue
                say(f"{figure}: {peer}")
                out_dir = os.path.join(opts.root, "out", f"{peer}-{figure}")
                log_path = os.path.join(opts.root, "logs", f"{peer}-{figure}.log")
                rows.append(run_driver(peer, figure, argv, out_dir, log_path, opts.timeout_for(figure)))
    finally:
        shutil.rmtree(os.path.join(opts.root, "out"), ignore_errors=True)
        if opts.drop_inputs:
            for info in inputs.values():
                if "directory" in info:
                    shutil.rmtree(info["directory"], ignore_errors=True)
    return {"inputs": inputs, "reps": opts.reps, "workers": 2, "rows": rows}


def missing_text(modules: list[str]) -> str:
    return f"{', '.join(modules)} not installed ({INSTALL_HINT})"


def print_table(result: dict[str, Any]) -> None:
    print(f"{'figure':<10}{'peer':<9}{'best':>12}  {'unit':<12}{'seconds':>9}  status")
    for row in result["rows"]:
        best = row.get("best")
        unit = UNITS[row["figure"]]
        if best:
            print(f"{row['figure']:<10}{row['peer']:<9}{best[unit]:>12}  {unit:<12}{best['seconds']:>9}  ok")
        else:
            print(f"{row['figure']:<10}{row['peer']:<9}{'-':>12}  {unit:<12}{'-':>9}  {row['status']}: {row['error']}")
    for figure, info in result["inputs"].items():
        if figure == "noop":
            print(f"  noop: {info['tasks']} tasks")
        elif figure == "wordcount":
            print(f"  wordcount: {info['total_bytes']} bytes, {info['words']} words in {len(info['files'])} files")
        else:
            print(f"  terasort: {info['records']} records of 100 B in {len(info['files'])} files")
