"""Helpers for Tubo's process supervisor against real processes and real cgroups.

Every supervisor a test makes lives on its own root and its own cgroup prefix (``feitian-test/<random>``); at
the end, whatever happened, everything in those cgroups is SIGKILLed (by pid, from ``cgroup.procs``), the shims
and workers the records name are SIGKILLed by (pid, start time), and the cgroup directories are removed.
"""

from __future__ import annotations

import contextlib
import os
import signal
import weakref
from collections.abc import Callable
from pathlib import Path

import msgspec
import pytest

from feitian.runtime.procs import ProcessRef, signal_process, wait_gone
from feitian.sched.tubo import ProcessSpec, ProcessStatus, ProcessSupervisor
from feitian.sched.tubo.cgroups import REQUIRED_CONTROLLERS, CgroupV1, detect
from feitian.testing.waiting import wait_until

TEST_PREFIX = "feitian-test"


def cgroups_unavailable() -> str:
    """Why cgroup tests cannot run here ("" when they can)."""
    found = detect(f"{TEST_PREFIX}/probe")
    if isinstance(found, str):
        return found
    for base in found.bases.values():
        with contextlib.suppress(OSError):
            base.rmdir()
    return ""


needs_cgroups = pytest.mark.skipif(
    bool(cgroups_unavailable()), reason=f"cgroup v1 ({', '.join(REQUIRED_CONTROLLERS)}) not usable: needs root"
)


def _kill_cgroup_tree(bases: list[Path]) -> None:
    for base in bases:
        if not base.is_dir():
            continue
        for _ in range(50):
            pids = [
                int(p)
                for d in [base, *[c for c in base.iterdir() if c.is_dir()]]
                for p in (d / "cgroup.procs").read_text().split()
            ]
            if not pids:
                break
            for pid in pids:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)
        wait_until(
            lambda b=base: not any((c / "cgroup.procs").read_text().strip() for c in b.iterdir() if c.is_dir()),
            timeout_s=10,
            what=f"cgroups under {base} empty",
        )
        for child in base.iterdir():
            if child.is_dir():
                child.rmdir()
        base.rmdir()


def _records_refs(root: Path) -> list[ProcessRef]:
    refs: list[ProcessRef] = []
    for record in (root / "procs").glob("*/record"):
        with contextlib.suppress(Exception):
            data = msgspec.json.decode(record.read_bytes())
            refs += [ProcessRef(**data[k]) for k in ("shim", "worker") if data.get(k)]
    return refs


class Supervisors:
    """Makes supervisors on one root and one cgroup prefix, and cleans up after them."""

    def __init__(self, root: Path, prefix: str) -> None:
        self.root = root
        self.prefix = prefix
        self.made: list[ProcessSupervisor] = []

    def __call__(self, **kwargs: object) -> ProcessSupervisor:
        sup = ProcessSupervisor(self.root, cgroup_prefix=self.prefix, **kwargs)  # type: ignore[arg-type]
        self.made.append(sup)
        sup.recover()
        return sup

    def cleanup(self) -> None:
        refs = _records_refs(self.root)
        for ref in refs:
            signal_process(ref, signal.SIGKILL)
        for sup in self.made:
            sup.close()
        found = detect(self.prefix)
        if isinstance(found, CgroupV1):
            _kill_cgroup_tree(list(dict.fromkeys(found.bases.values())))
            with contextlib.suppress(OSError):
                for base in dict.fromkeys(found.bases.values()):
                    base.parent.rmdir()  # feitian-test, when no other test uses it
        assert not wait_gone(refs, 10), "processes of the test would not die"


Make = Callable[..., ProcessSupervisor]


# supervisor -> every change its poll() reported (weak: an id() could be reused by the next test's supervisor)
_REPORTED: weakref.WeakKeyDictionary[ProcessSupervisor, list[ProcessStatus]] = weakref.WeakKeyDictionary()


def ended(sup: ProcessSupervisor, proc_id: str, timeout_s: float = 20) -> ProcessStatus:
    """Poll until ``proc_id`` ended; checks that poll() reported the end exactly once."""
    changed = _REPORTED.setdefault(sup, [])

    def done() -> bool:
        changed.extend(sup.poll())
        return sup.get(proc_id).state.ended

    wait_until(done, timeout_s=timeout_s, what=f"{proc_id} ended")
    status = sup.get(proc_id)
    assert [c for c in changed if c.proc_id == proc_id and c.state.ended] == [status], "poll() reports the end once"
    return status


def gate(tmp_path: Path, name: str) -> Path:
    """A fifo a process blocks on until the test writes to it."""
    path = tmp_path / name
    os.mkfifo(path)
    return path


def open_gate(path: Path, text: str = "go") -> None:
    fd = os.open(path, os.O_WRONLY)
    os.write(fd, text.encode() + b"\n")
    os.close(fd)


def spec(proc_id: str, script: str, **kwargs: object) -> ProcessSpec:
    return ProcessSpec(proc_id, kwargs.pop("app_id", "app1"), ["sh", "-c", script], **kwargs)  # type: ignore[arg-type]
