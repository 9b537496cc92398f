"""Cgroup v1 for Tubo's processes: one cgroup per process in the cpu, memory and pids hierarchies (and cpuacct
when it is mounted on its own), at ``<mount of controller>/<prefix>/<proc_id>``.

:func:`detect` finds the hierarchies in ``/proc/self/mounts`` and checks that the prefix can be created in each;
when it cannot (not root, no v1 hierarchy: a laptop with cgroup v2 only, a container) it says why, and the
supervisor runs without isolation. Everything here is a plain file operation on cgroupfs: no waiting.

Limits written (:meth:`CgroupV1.create`): ``cpu.cfs_quota_us = cpu_millis * cfs_period_us / 1000`` and
``cpu.shares = cpu_millis * 1024 / 1000``; ``memory.limit_in_bytes`` (and ``memory.memsw.limit_in_bytes`` when
the kernel accounts swap, so a process cannot swap its way past the limit); ``pids.max``.
"""

from __future__ import annotations

import contextlib
import errno
import os
import signal
from pathlib import Path

import msgspec

from feitian.errors import UnavailableError
from feitian.runtime.files import os_error

__all__ = ["REQUIRED_CONTROLLERS", "CgroupStats", "CgroupV1", "detect"]

REQUIRED_CONTROLLERS = ("cpu", "memory", "pids")
CFS_PERIOD_US = 100_000
MIN_CFS_QUOTA_US = 1_000  # the kernel refuses less
KILL_PASSES = 4  # SIGKILL passes over cgroup.procs per call: a forking process may add pids during one pass


class CgroupStats(msgspec.Struct, frozen=True):
    memory_peak_bytes: int = 0  # memory.max_usage_in_bytes
    oom_kills: int = 0  # memory.oom_control "oom_kill": processes the kernel killed for the limit
    cpu_ns: int = 0  # cpuacct.usage
    nr_throttled: int = 0  # cpu.stat: periods in which the group used up its quota
    throttled_ns: int = 0  # cpu.stat throttled_time
    pids_max_hits: int = 0  # pids.events "max": forks refused by pids.max


def _mounts(mounts_file: str) -> dict[str, Path]:
    """controller -> mount point of its v1 hierarchy (co-mounted controllers share one)."""
    found: dict[str, Path] = {}
    try:
        text = Path(mounts_file).read_text()
    except OSError:
        return found
    for line in text.splitlines():
        parts = line.split()
        if len(parts) < 4 or parts[2] != "cgroup":
            continue
        for option in parts[3].split(","):
            if option in (*REQUIRED_CONTROLLERS, "cpuacct"):
                found.setdefault(option, Path(parts[1]))
    return found


def detect(prefix: str, mounts_file: str = "/proc/self/mounts") -> CgroupV1 | str:
    """The cgroups of ``prefix`` (created if missing), or why they cannot be used."""
    mounts = _mounts(mounts_file)
    missing = [c for c in REQUIRED_CONTROLLERS if c not in mounts]
    if missing:
        v2 = " (cgroup v2 is not supported yet)" if Path("/sys/fs/cgroup/cgroup.controllers").exists() else ""
        return f"no cgroup v1 hierarchy for {', '.join(missing)}{v2}"
    bases: list[Path] = []
    for controller in (*REQUIRED_CONTROLLERS, "cpuacct"):
        if controller in mounts:
            base = (mounts[controller] / prefix).resolve()
            if base not in bases:
                bases.append(base)
    for base in bases:
        try:
            base.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            return f"cannot create cgroup {base}: {exc.strerror or exc}"
        if not os.access(base, os.W_OK):
            return f"cgroup {base} is not writable"
    return CgroupV1(prefix, {c: (m / prefix).resolve() for c, m in mounts.items()})


def _read_int(path: Path, default: int = 0) -> int:
    try:
        return int(path.read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return default


def _read_keyed(path: Path) -> dict[str, int]:
    values: dict[str, int] = {}
    with contextlib.suppress(OSError):
        for line in path.read_text().splitlines():
            key, _, value = line.partition(" ")
            with contextlib.suppress(ValueError):
                values[key] = int(value)
    return values


class CgroupV1:
    """The per-process cgroups under one prefix. ``bases`` maps each controller to ``<mount>/<prefix>``."""

    def __init__(self, prefix: str, bases: dict[str, Path]) -> None:
        self.prefix = prefix
        self.bases = bases
        self.has_memsw = (bases["memory"] / "memory.memsw.limit_in_bytes").exists()

    def dirs(self, proc_id: str) -> list[Path]:
        """The process's cgroup directories, one per hierarchy (co-mounted controllers share one)."""
        seen: list[Path] = []
        for base in self.bases.values():
            path = base / proc_id
            if path not in seen:
                seen.append(path)
        return seen

    def procs_files(self, proc_id: str) -> list[str]:
        """The ``cgroup.procs`` files a process joins (the shim writes its pid into each)."""
        return [str(d / "cgroup.procs") for d in self.dirs(proc_id)]

    def _path(self, controller: str, proc_id: str, name: str) -> Path:
        return self.bases[controller] / proc_id / name

    def _write(self, path: Path, value: int | str) -> None:
        try:
            path.write_text(str(value))
        except OSError as exc:
            raise os_error(exc, "write", path) from exc

    def create(self, proc_id: str, *, cpu_millis: int, memory_bytes: int, max_pids: int) -> None:
        """Make the cgroups and write the limits. A leftover directory of an earlier run is reused."""
        for path in self.dirs(proc_id):
            try:
                path.mkdir(exist_ok=True)
            except OSError as exc:
                raise os_error(exc, "mkdir", path) from exc
        period = _read_int(self._path("cpu", proc_id, "cpu.cfs_period_us"), CFS_PERIOD_US)
        quota = max(MIN_CFS_QUOTA_US, cpu_millis * period // 1000)
        self._write(self._path("cpu", proc_id, "cpu.cfs_quota_us"), quota)
        self._write(self._path("cpu", proc_id, "cpu.shares"), max(2, cpu_millis * 1024 // 1000))
        self._write(self._path("memory", proc_id, "memory.limit_in_bytes"), memory_bytes)
        if self.has_memsw:  # memsw must stay >= the memory limit: written after it
            self._write(self._path("memory", proc_id, "memory.memsw.limit_in_bytes"), memory_bytes)
        self._write(self._path("pids", proc_id, "pids.max"), max_pids)

    def exists(self, proc_id: str) -> bool:
        return any(d.is_dir() for d in self.dirs(proc_id))

    def pids(self, proc_id: str) -> list[int]:
        """The processes in the process's cgroup now (from the pids hierarchy's ``cgroup.procs``)."""
        try:
            text = self._path("pids", proc_id, "cgroup.procs").read_text()
        except OSError:
            return []
        return [int(p) for p in text.split()]

    def kill_all(self, proc_id: str, spare: int = 0) -> int:
        """SIGKILL every process in the cgroup but ``spare`` (the shim, which must live to record the exit
        status), in a few passes; returns how many are left (the next call tries again)."""
        left: list[int] = []
        for _ in range(KILL_PASSES):
            left = [p for p in self.pids(proc_id) if p != spare]
            if not left:
                return 0
            for pid in left:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)
        return len([p for p in self.pids(proc_id) if p != spare])

    def stats(self, proc_id: str) -> CgroupStats:
        oom = _read_keyed(self._path("memory", proc_id, "memory.oom_control"))
        cpu = _read_keyed(self._path("cpu", proc_id, "cpu.stat"))
        acct = "cpuacct" if "cpuacct" in self.bases else "cpu"
        events = _read_keyed(self._path("pids", proc_id, "pids.events"))
        return CgroupStats(
            memory_peak_bytes=_read_int(self._path("memory", proc_id, "memory.max_usage_in_bytes")),
            oom_kills=oom.get("oom_kill", 0),
            cpu_ns=_read_int(self._path(acct, proc_id, "cpuacct.usage")),
            nr_throttled=cpu.get("nr_throttled", 0),
            throttled_ns=cpu.get("throttled_time", 0),
            pids_max_hits=events.get("max", 0),
        )

    def remove(self, proc_id: str) -> bool:
        """Remove the cgroup directories; False while a process is still in one (try again later)."""
        done = True
        for path in self.dirs(proc_id):
            try:
                path.rmdir()
            except FileNotFoundError:
                continue
            except OSError as exc:
                if exc.errno != errno.EBUSY:
                    raise os_error(exc, "rmdir", path) from exc
                done = False
        return done

    def remove_prefix(self) -> bool:
        """Remove the prefix's own directories if no process cgroup is left under them (else keep them)."""
        done = True
        for base in dict.fromkeys(self.bases.values()):
            try:
                base.rmdir()
            except FileNotFoundError:
                continue
            except OSError:
                done = False
        return done

    def children(self) -> list[str]:
        """The process cgroups that exist under the prefix (to sweep those no record knows)."""
        try:
            return sorted(e.name for e in os.scandir(self.bases["pids"]) if e.is_dir())
        except OSError as exc:
            raise UnavailableError(f"list cgroups under {self.bases['pids']}: {exc.strerror or exc}") from exc
