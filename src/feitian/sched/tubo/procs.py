"""What Tubo starts and reports: :class:`ProcessSpec`, :class:`ProcState`, :class:`ProcessStatus`, their bounds and
validation, and the shim that stays with every process.

The shim is a few lines of ``/bin/sh`` (dash on Debian: about 0.5 MB of private memory each, the rest of its
resident pages shared with every other shell). Tubo starts it in a new session; it joins the process's cgroups,
makes itself immune to the OOM killer and to SIGTERM/SIGINT/SIGHUP/SIGQUIT, forks the worker (which takes the
default signal handling back and execs the command), hands the worker's pid to Tubo over a pipe, waits for it
and writes its wait status to the process's ``exit`` file. Tubo reads that file whether or not it was running
when the worker ended, so a restarted Tubo learns the real exit status (docs/sched.md, "Tubo: processes on a
machine", says why a shell and not Python or a C helper, and what it costs).
"""

from __future__ import annotations

import enum
import re
import signal

import msgspec

from feitian.errors import InvalidArgumentError
from feitian.runtime.procs import ProcessRef

__all__ = [
    "MAX_ARGV_BYTES",
    "MAX_ENV_BYTES",
    "MAX_GRACE_S",
    "ProcState",
    "ProcessSpec",
    "ProcessStatus",
    "validate_spec",
]

PROC_ID = re.compile(r"[A-Za-z0-9._-]{1,128}")
MAX_APP_ID_BYTES = 256
MAX_ARGV_ITEMS = 4096
MAX_ARGV_BYTES = 128 * 1024  # all of argv together
MAX_ENV_ITEMS = 1024
MAX_ENV_BYTES = 128 * 1024  # every KEY=VALUE together
MAX_PATH_BYTES = 4096  # package_dir
MIN_CPU_MILLIS, MAX_CPU_MILLIS = 10, 1_000_000  # the kernel's smallest CFS quota is 1 ms per 100 ms period
MIN_MEMORY_BYTES, MAX_MEMORY_BYTES = 4 << 20, 16 << 40  # the shim and a small program need a few MiB
MIN_PIDS, MAX_PIDS = 1, 4_194_304  # the kernel's largest pid_max
MAX_GRACE_S = 3600.0
RESERVED_ENV = ("FEITIAN_PROC_ID", "FEITIAN_APP_ID", "FEITIAN_WORK_DIR", "FEITIAN_PACKAGE_DIR")


class ProcessSpec(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """What to run. ``argv[0]`` is looked up on ``PATH`` (``<package_dir>/bin`` first when a package is given,
    then ``env["PATH"]`` or ``/usr/local/bin:/usr/bin:/bin``); a relative path with a ``/`` is relative to
    ``package_dir``."""

    proc_id: str  # unique on the machine: [A-Za-z0-9._-]{1,128}
    app_id: str
    argv: list[str]
    env: dict[str, str] = {}
    package_dir: str = ""  # an unpacked read-only package; exposed as FEITIAN_PACKAGE_DIR
    cpu_millis: int = 1000  # cpu.cfs_quota_us = cpu_millis * period / 1000; cpu.shares = cpu_millis * 1.024
    memory_bytes: int = 256 << 20  # memory.limit_in_bytes (and memory.memsw.limit_in_bytes when present)
    max_pids: int = 1024  # pids.max (tasks: threads count), plus one for the shim
    grace_s: float = 10.0  # SIGTERM -> SIGKILL when stopped without an explicit grace


class ProcState(enum.Enum):
    RUNNING = "running"
    FINISHED = "finished"  # exited with code 0
    FAILED = "failed"  # a non-zero exit code or a signal
    KILLED = "killed"  # ended after a stop order
    OOM_KILLED = "oom_killed"  # the kernel's OOM killer ended it: memory over its limit
    LOST = "lost"  # the record exists but the process vanished and no exit status was written

    @property
    def ended(self) -> bool:
        return self is not ProcState.RUNNING


class ProcessStatus(msgspec.Struct, frozen=True):
    proc_id: str
    app_id: str
    state: ProcState
    pid: int  # the worker's pid (0 when it never got one)
    start_time: int  # its kernel start time: (pid, start_time) is a runtime.procs.ProcessRef
    exit_code: int | None = None  # set when it exited by itself
    signal: int | None = None  # set when a signal ended it
    detail: str = ""  # for people: why it ended, or what is being done to it
    work_dir: str = ""
    started_at_ns: int = 0  # wall clock
    ended_at_ns: int = 0  # wall clock; 0 while running
    memory_peak_bytes: int = 0  # from its memory cgroup when it ended (0 without cgroups)
    cpu_ns: int = 0  # CPU time of its cgroup when it ended (0 without cgroups)

    @property
    def ref(self) -> ProcessRef:
        return ProcessRef(self.pid, self.start_time)


def _bad(spec_id: str, what: str, hint: str | None = None) -> InvalidArgumentError:
    return InvalidArgumentError(f"start {spec_id}: {what}", hint=hint, proc_id=spec_id)


def _has_control(text: str) -> bool:
    return any(ord(ch) < 32 or ord(ch) == 127 for ch in text)


def validate_spec(spec: ProcessSpec) -> None:
    """Raise :class:`InvalidArgumentError` naming the first field out of its bound."""
    if not isinstance(spec.proc_id, str) or not PROC_ID.fullmatch(spec.proc_id):
        raise InvalidArgumentError(
            f"start: bad process id {str(spec.proc_id)[:140]!r}",
            hint="a process id is 1 to 128 characters of A-Z a-z 0-9 . _ -",
        )
    if spec.proc_id in (".", ".."):
        raise _bad(spec.proc_id, "'.' and '..' are not process ids")
    name = spec.proc_id
    app = spec.app_id
    if not app or len(app.encode()) > MAX_APP_ID_BYTES or _has_control(app):
        raise _bad(name, f"bad application id {app[:64]!r}: 1 to {MAX_APP_ID_BYTES} bytes, no control characters")
    _validate_argv(name, spec.argv)
    _validate_env(name, spec.env)
    if len(spec.package_dir.encode()) > MAX_PATH_BYTES or "\0" in spec.package_dir:
        raise _bad(name, f"package_dir is longer than {MAX_PATH_BYTES} bytes or holds a NUL")
    if spec.package_dir and not spec.package_dir.startswith("/"):
        raise _bad(name, f"package_dir {spec.package_dir!r} is not an absolute path")
    _check_range(name, "cpu_millis", spec.cpu_millis, MIN_CPU_MILLIS, MAX_CPU_MILLIS)
    _check_range(name, "memory_bytes", spec.memory_bytes, MIN_MEMORY_BYTES, MAX_MEMORY_BYTES)
    _check_range(name, "max_pids", spec.max_pids, MIN_PIDS, MAX_PIDS)
    validate_grace(name, spec.grace_s)


def validate_grace(name: str, grace_s: float) -> None:
    if not isinstance(grace_s, int | float) or isinstance(grace_s, bool) or not 0 <= grace_s <= MAX_GRACE_S:
        raise _bad(name, f"grace_s {grace_s!r} is not between 0 and {MAX_GRACE_S:g} seconds")


def _check_range(name: str, field: str, value: int, low: int, high: int) -> None:
    if not isinstance(value, int) or isinstance(value, bool) or not low <= value <= high:
        raise _bad(name, f"{field} {value!r} is not between {low} and {high}")


def _validate_argv(name: str, argv: list[str]) -> None:
    if not argv or not argv[0]:
        raise _bad(name, "empty command (argv)")
    if len(argv) > MAX_ARGV_ITEMS:
        raise _bad(name, f"argv has {len(argv)} items, more than {MAX_ARGV_ITEMS}")
    size = sum(len(a.encode()) + 1 for a in argv)
    if size > MAX_ARGV_BYTES:
        raise _bad(name, f"argv is {size} bytes, more than {MAX_ARGV_BYTES}", hint="pass large inputs in a file")
    if any("\0" in a for a in argv):
        raise _bad(name, "an argv item holds a NUL character")


def _validate_env(name: str, env: dict[str, str]) -> None:
    if len(env) > MAX_ENV_ITEMS:
        raise _bad(name, f"env has {len(env)} variables, more than {MAX_ENV_ITEMS}")
    size = sum(len(k.encode()) + len(v.encode()) + 2 for k, v in env.items())
    if size > MAX_ENV_BYTES:
        raise _bad(name, f"env is {size} bytes, more than {MAX_ENV_BYTES}")
    for key, value in env.items():
        if not key or "=" in key or "\0" in key or "\0" in value:
            raise _bad(name, f"bad environment variable {key[:64]!r}: empty, or holds '=' or NUL")
        if key in RESERVED_ENV:
            raise _bad(name, f"environment variable {key} is set by Tubo")


def describe_end(code: int | None, sig: int | None) -> str:
    if sig is not None:
        try:
            return f"killed by {signal.Signals(sig).name}"
        except ValueError:
            return f"killed by signal {sig}"
    return f"exit code {code}"


def decode_wait_status(text: str) -> tuple[int | None, int | None]:
    """(exit_code, signal) from what the shim wrote: the shell's ``$?`` after ``wait``, which is the exit code
    (0..128) or 128 + the signal number. An exit code above 128 reads as a signal (the shell cannot tell them
    apart); docs/sched.md says so."""
    status = int(text)
    if status > 128:
        return None, status - 128
    return status, None


# The shim: $1 exit file, $2 work dir, $3 the cgroup.procs files to join (':'-separated, may be empty), $4 the
# RLIMIT_AS in KiB for runs without cgroups (may be empty), then the command. Tubo reads the worker's pid from fd 3.
SHIM = r"""
trap '' TERM INT HUP QUIT
set -f
x=$1 w=$2 g=$3 v=$4
shift 4
if [ -n "$g" ]; then
  IFS=:
  for f in $g; do echo $$ > "$f" || exit 120; done
  unset IFS
  echo -1000 > /proc/self/oom_score_adj 2>/dev/null
fi
cd "$w" || exit 121
(
  trap - TERM HUP
  [ -z "$g" ] || echo 0 > /proc/self/oom_score_adj 2>/dev/null
  [ -z "$v" ] || ulimit -v "$v" || exit 122
  exec 3>&-
  exec "$@"
) &
c=$!
echo "$c" >&3
exec 3>&-
wait "$c"
echo "$?" > "$x"
"""
