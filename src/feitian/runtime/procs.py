"""Process lifecycle for node processes: spawn detached, identify by pid *and* start time, stop by pid.

A pid alone is not an identity: after a process exits its pid can be reused by an unrelated program. Every
process feitian starts is recorded with its kernel start time (``/proc/<pid>/stat`` field 22), and a signal is
sent only if the pid still has that start time. Nothing here ever signals a process by name.
"""

from __future__ import annotations

import contextlib
import os
import signal
import time
from collections.abc import Mapping, Sequence

import msgspec

from feitian.errors import InvalidArgumentError


class ProcessRef(msgspec.Struct, frozen=True):
    pid: int
    start_time: int  # clock ticks since boot, from /proc/<pid>/stat; 0 if unknown


def _stat_fields(pid: int, task: str = "") -> list[str] | None:
    try:
        with open(f"/proc/{pid}/task/{task}/stat" if task else f"/proc/{pid}/stat", "rb") as f:
            raw = f.read().decode("ascii", "replace")
    except (FileNotFoundError, ProcessLookupError, PermissionError):
        return None
    # The command name (field 2) is in parentheses and may contain spaces: split after the last ')'.
    return raw[raw.rindex(")") + 2 :].split()


def start_time_of(pid: int) -> int:
    fields = _stat_fields(pid)
    return int(fields[19]) if fields else 0


def _reap(pid: int) -> None:
    """If ``pid`` is our own exited child, collect it so it does not linger as a zombie."""
    with contextlib.suppress(ChildProcessError, OSError):
        os.waitpid(pid, os.WNOHANG)


def is_running(ref: ProcessRef) -> bool:
    """True if the process still exists, is the one we started, and is not a zombie."""
    _reap(ref.pid)
    fields = _stat_fields(ref.pid)
    if fields is None:
        return False
    state, start = fields[0], int(fields[19])
    if ref.start_time and start != ref.start_time:
        return False  # the pid was reused
    return state not in ("Z", "X")


def rss_bytes(ref: ProcessRef) -> int | None:
    """The process's resident memory now (``VmRSS`` of ``/proc/<pid>/status``); None once it is gone."""
    if not is_running(ref):
        return None
    try:
        with open(f"/proc/{ref.pid}/status", "rb") as f:
            for line in f:
                if line.startswith(b"VmRSS:"):
                    return int(line.split()[1]) * 1024  # reported in kB
    except (FileNotFoundError, ProcessLookupError, PermissionError):
        return None
    return None


def spawn_detached(argv: Sequence[str], log_path: str, env: Mapping[str, str] | None = None) -> ProcessRef:
    """Start ``argv`` in a new session with stdin from /dev/null and stdout+stderr appended to ``log_path``."""
    if not argv:
        raise InvalidArgumentError("spawn: empty command")
    file_actions = [
        (os.POSIX_SPAWN_OPEN, 0, "/dev/null", os.O_RDONLY, 0),
        (os.POSIX_SPAWN_OPEN, 1, log_path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644),
        (os.POSIX_SPAWN_DUP2, 1, 2),
    ]
    pid = os.posix_spawn(
        argv[0], list(argv), dict(env if env is not None else os.environ), file_actions=file_actions, setsid=True
    )
    return ProcessRef(pid, start_time_of(pid))


def signal_process(ref: ProcessRef, sig: int) -> bool:
    """Send ``sig`` if ``ref`` is still the process we started; False if it is gone."""
    if not is_running(ref):
        return False
    try:
        os.kill(ref.pid, sig)
    except ProcessLookupError:
        return False
    return True


def _gone(ref: ProcessRef) -> bool:
    """Exited, every thread of it: after SIGKILL the main thread can already be a zombie while other threads still
    exit, holding the process's files (and the locks on them) so that a replacement could not open them."""
    _reap(ref.pid)
    fields = _stat_fields(ref.pid)
    if fields is None or (ref.start_time and int(fields[19]) != ref.start_time):
        return True  # no such process, or the pid was reused
    try:
        tasks = os.listdir(f"/proc/{ref.pid}/task")
    except (FileNotFoundError, ProcessLookupError, PermissionError):
        return True
    states = [f[0] for f in (_stat_fields(ref.pid, task) for task in tasks) if f is not None]
    return all(state in ("Z", "X") for state in states)


def wait_gone(refs: Sequence[ProcessRef], timeout_s: float) -> list[ProcessRef]:
    """Poll until every process has exited — every thread of it, so its files and locks are released — or the
    timeout passes; returns those still running."""
    deadline = time.monotonic() + timeout_s
    remaining = [r for r in refs if not _gone(r)]
    while remaining and time.monotonic() < deadline:
        time.sleep(0.02)
        remaining = [r for r in remaining if not _gone(r)]
    return remaining


def stop_processes(refs: Sequence[ProcessRef], grace_s: float = 10.0, kill_wait_s: float = 5.0) -> list[ProcessRef]:
    """SIGTERM each process, wait ``grace_s``, SIGKILL the rest, wait again. Returns those that would not stop."""
    for ref in refs:
        signal_process(ref, signal.SIGTERM)
    left = wait_gone(refs, grace_s)
    for ref in left:
        signal_process(ref, signal.SIGKILL)
    return wait_gone(left, kill_wait_s)
