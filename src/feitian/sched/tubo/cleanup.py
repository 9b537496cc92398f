"""Stopping everything a Tubo started, when its cluster is taken down (``feitian cluster down``, test clusters).

Processes a Tubo starts outlive it by design (a restarted Tubo re-adopts them), so stopping the Tubo's node
stops none of them. :func:`stop_started` ends them: the workers and shims its records name (signalled only if
their pid still has the recorded start time), then whatever is left in its cgroups (by the pids listed there),
and removes those cgroups. Nothing is ever signalled by name.
"""

from __future__ import annotations

import contextlib
import time
from pathlib import Path

import msgspec

from feitian.runtime.procs import ProcessRef, start_time_of, stop_processes
from feitian.sched.tubo import cgroups

__all__ = ["recorded_processes", "stop_started"]


def recorded_processes(root: Path) -> list[ProcessRef]:
    """The workers and shims a Tubo's records name that still run (same pid and start time)."""
    out = []
    for record in Path(root, "procs").glob("*/record"):
        try:
            data = msgspec.json.decode(record.read_bytes())
        except (OSError, msgspec.DecodeError):
            continue
        for key in ("worker", "shim"):
            ref = data.get(key) if isinstance(data, dict) else None
            pid = ref.get("pid") if isinstance(ref, dict) else None
            if isinstance(pid, int) and pid > 0 and start_time_of(pid) == ref.get("start_time"):  # type: ignore[union-attr]
                out.append(ProcessRef(pid, start_time_of(pid)))
    return out


def stop_started(root: Path, cgroup_prefix: str, grace_s: float = 2.0) -> list[ProcessRef]:
    """Stop what the Tubo with this root and cgroup prefix started; remove its cgroups. Returns the processes
    that would not stop."""
    left = stop_processes(recorded_processes(root), grace_s=grace_s)
    found = cgroups.detect(cgroup_prefix)
    if isinstance(found, cgroups.CgroupV1):
        for child in found.children():
            for _ in range(50):
                if found.kill_all(child) == 0 and found.remove(child):
                    break
                _wait_a_little(found, child)
        for base in found.bases.values():
            with contextlib.suppress(OSError):
                base.rmdir()
    return left


def _wait_a_little(found: cgroups.CgroupV1, child: str) -> None:
    """A killed process leaves its cgroup once the kernel has reaped it: poll its cgroup.procs briefly."""
    for _ in range(20):
        if not found.pids(child):
            return
        time.sleep(0.005)
