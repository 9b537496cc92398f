"""Starting one process: its environment, the lookup of its command, and the spawn of its shim.

The spawn is the only step that waits, and only for the shim to fork the worker and write its pid (a few
milliseconds; at most :data:`SHIM_START_TIMEOUT_S`), never for a process to exit.
"""

from __future__ import annotations

import contextlib
import os
import select
import shutil
import signal
import subprocess
from pathlib import Path

from feitian.errors import InvalidArgumentError, UnavailableError
from feitian.runtime.files import os_error
from feitian.runtime.procs import ProcessRef, start_time_of
from feitian.sched.tubo.procs import SHIM, ProcessSpec

__all__ = ["DEFAULT_PATH", "SHIM_START_TIMEOUT_S", "default_signal_prefix", "resolve_command", "spawn_shim"]

DEFAULT_PATH = "/usr/local/bin:/usr/bin:/bin"
SHIM_START_TIMEOUT_S = 5.0
STDERR_TAIL_BYTES = 512
# Signals the shim and worker get with their default action whatever Tubo's are (Python ignores SIGPIPE).
_DEFAULT_SIGNALS = (signal.SIGPIPE, signal.SIGXFSZ, signal.SIGINT, signal.SIGQUIT, signal.SIGTERM, signal.SIGHUP)


def default_signal_prefix() -> list[str]:
    """``env --default-signal=INT,QUIT`` when this system's env has it (coreutils 8.31 and later), else []:
    a POSIX shell starts a background job with SIGINT and SIGQUIT ignored, and this gives the worker them
    back. Without it, a worker starts with SIGINT and SIGQUIT ignored (docs/sched.md)."""
    env = shutil.which("env")
    if env is None:
        return []
    try:
        probe = subprocess.run([env, "--default-signal=INT,QUIT", "true"], capture_output=True, timeout=5, check=False)
    except (OSError, subprocess.TimeoutExpired):
        return []
    return [env, "--default-signal=INT,QUIT"] if probe.returncode == 0 else []


def worker_env(spec: ProcessSpec, work_dir: Path) -> dict[str, str]:
    env = {"HOME": str(work_dir), "LANG": "C.UTF-8", **spec.env}
    path = spec.env.get("PATH", DEFAULT_PATH)
    if spec.package_dir:
        path = f"{spec.package_dir}/bin:{path}"
        env["FEITIAN_PACKAGE_DIR"] = spec.package_dir
    env["PATH"] = path
    env["FEITIAN_PROC_ID"] = spec.proc_id
    env["FEITIAN_APP_ID"] = spec.app_id
    env["FEITIAN_WORK_DIR"] = str(work_dir)
    return env


def resolve_command(spec: ProcessSpec, path: str) -> str:
    """The executable ``argv[0]`` names, or an InvalidArgumentError naming what was searched."""
    command = spec.argv[0]
    if "/" in command:
        full = command if command.startswith("/") else os.path.join(spec.package_dir or "/", command)
        if os.path.isfile(full) and os.access(full, os.X_OK):
            return full
        raise InvalidArgumentError(
            f"start {spec.proc_id}: {full} is not an executable file", proc_id=spec.proc_id, command=command
        )
    found = shutil.which(command, path=path)
    if found is None:
        raise InvalidArgumentError(
            f"start {spec.proc_id}: command {command!r} not found on PATH {path}",
            hint="give an absolute path, put it in the package's bin/, or set PATH in env",
            proc_id=spec.proc_id,
            command=command,
        )
    return found


def spawn_shim(
    *,
    proc_id: str,
    argv: list[str],
    env: dict[str, str],
    work_dir: Path,
    exit_file: Path,
    cgroup_procs: list[str],
    vmem_kib: int,
) -> tuple[ProcessRef, ProcessRef]:
    """Start the shim in a new session and return (shim, worker). ``argv[0]`` is already resolved."""
    shim_argv = [
        "/bin/sh",
        "-c",
        SHIM,
        f"tubo-shim:{proc_id}",
        str(exit_file),
        str(work_dir),
        ":".join(cgroup_procs),
        str(vmem_kib) if vmem_kib else "",
        *argv,
    ]
    read_fd, write_fd = os.pipe()
    extra = -1
    if write_fd == 3:  # dup2(3, 3) would leave close-on-exec set
        extra = write_fd
        write_fd = os.dup(write_fd)
    try:
        actions = [
            (os.POSIX_SPAWN_OPEN, 0, "/dev/null", os.O_RDONLY, 0),
            (os.POSIX_SPAWN_OPEN, 1, str(work_dir / "stdout.log"), os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600),
            (os.POSIX_SPAWN_OPEN, 2, str(work_dir / "stderr.log"), os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600),
            (os.POSIX_SPAWN_DUP2, write_fd, 3),
            *((os.POSIX_SPAWN_CLOSE, fd) for fd in _inheritable_fds() if fd not in (write_fd, 3)),
        ]
        try:
            shim_pid = os.posix_spawn(
                "/bin/sh", shim_argv, env, file_actions=actions, setsid=True, setsigdef=_DEFAULT_SIGNALS, setsigmask=()
            )
        except OSError as exc:
            raise os_error(exc, "spawn", "/bin/sh") from exc
        shim = ProcessRef(shim_pid, start_time_of(shim_pid))
        os.close(write_fd)
        write_fd = -1
        line = _read_line(read_fd, SHIM_START_TIMEOUT_S)
    finally:
        for fd in (read_fd, write_fd, extra):
            if fd >= 0:
                with contextlib.suppress(OSError):
                    os.close(fd)
    if not line.strip().isdigit():
        tail = _tail(work_dir / "stderr.log")
        with contextlib.suppress(ChildProcessError, OSError):
            os.kill(shim_pid, signal.SIGKILL)
            os.waitpid(shim_pid, 0)
        raise UnavailableError(
            f"start {proc_id}: the shim did not start the process" + (f": {tail}" if tail else ""), proc_id=proc_id
        )
    pid = int(line)
    return shim, ProcessRef(pid, start_time_of(pid))


def _inheritable_fds() -> list[int]:
    """This process's descriptors above stderr that a child would inherit (opened without close-on-exec, e.g.
    passed down by whatever started Tubo): the shim closes them, so no process holds one of Tubo's files."""
    found: list[int] = []
    try:
        names = os.listdir("/proc/self/fd")
    except OSError:
        return found
    for name in names:
        fd = int(name)
        if fd > 2:
            with contextlib.suppress(OSError):  # the descriptor listdir used is gone by now
                if os.get_inheritable(fd):
                    found.append(fd)
    return found


def _read_line(fd: int, timeout_s: float) -> str:
    data = b""
    while not data.endswith(b"\n"):
        ready, _, _ = select.select([fd], [], [], timeout_s)
        if not ready:
            return ""
        chunk = os.read(fd, 64)
        if not chunk:
            return ""
        data += chunk
    return data.decode("ascii", "replace")


def _tail(path: Path) -> str:
    try:
        with open(path, "rb") as f:
            f.seek(0, os.SEEK_END)
            f.seek(max(0, f.tell() - STDERR_TAIL_BYTES))
            return f.read().decode("utf-8", "replace").strip().splitlines()[-1]
    except (OSError, IndexError):
        return ""
