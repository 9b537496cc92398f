"""This machine's capacity, in the allocator's built-in resources, and its health, for Tubo's heartbeats.

Capacity (:func:`detect_capacity`): ``cpu`` millicores = CPUs this process may run on (``sched_getaffinity``),
capped by its own cgroup's CPU quota; ``memory`` bytes = physical memory, capped by its own memory cgroup's
limit; ``disk`` bytes = free under Tubo's root when measured; ``net`` Mbit/s = the fastest non-loopback
interface's ``/sys/class/net/*/speed``, else :data:`DEFAULT_NET_MBPS`. Each can be overridden in
:class:`MachineConfig`, so one laptop can pose as several machines.

Health (:func:`machine_health`, cheap: one ``statvfs``): unhealthy when the file system of Tubo's root is
fuller than ``disk_full_ratio`` or has less than ``min_free_disk_bytes`` free.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import msgspec

from feitian.errors import ConfigError

__all__ = ["DEFAULT_NET_MBPS", "MachineConfig", "MachineHealth", "detect_capacity", "machine_health"]

DEFAULT_NET_MBPS = 1000
_UNLIMITED = 1 << 60  # cgroup v1 shows "no limit" as a huge number


class MachineConfig(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    cpu_millis: int | None = None  # None: detected
    memory_bytes: int | None = None
    disk_bytes: int | None = None
    net_mbps: int | None = None
    disk_full_ratio: float = 0.95  # unhealthy above this fraction of the root's file system used
    min_free_disk_bytes: int = 1 << 30  # ... or below this many bytes free

    def validate(self) -> None:
        problems = [
            f"{name} must be a positive integer, not {value!r}"
            for name, value in (
                ("cpu_millis", self.cpu_millis),
                ("memory_bytes", self.memory_bytes),
                ("disk_bytes", self.disk_bytes),
                ("net_mbps", self.net_mbps),
            )
            if value is not None and (not isinstance(value, int) or isinstance(value, bool) or value <= 0)
        ]
        if not 0 < self.disk_full_ratio <= 1:
            problems.append(f"disk_full_ratio must be in (0, 1], not {self.disk_full_ratio!r}")
        if self.min_free_disk_bytes < 0:
            problems.append(f"min_free_disk_bytes must be >= 0, not {self.min_free_disk_bytes!r}")
        if problems:
            raise ConfigError("tubo machine configuration", problems=problems)


class MachineHealth(msgspec.Struct, frozen=True):
    healthy: bool
    reasons: list[str] = []  # why not, for people and the master's view


def _own_cgroup_file(controller: str, name: str) -> Path | None:
    """``name`` in this process's cgroup of ``controller`` (v1), or in its v2 cgroup."""
    try:
        lines = Path("/proc/self/cgroup").read_text().splitlines()
    except OSError:
        return None
    for line in lines:
        _, controllers, path = line.split(":", 2)
        if controller in controllers.split(","):
            return Path(f"/sys/fs/cgroup/{controller}{path}") / name
        if controllers == "" and name.startswith(("cpu.max", "memory.max")):
            return Path(f"/sys/fs/cgroup{path}") / name
    return None


def _read(path: Path | None) -> str:
    if path is None:
        return ""
    try:
        return path.read_text().strip()
    except OSError:
        return ""


def cpu_millis_available() -> int:
    cpus = len(os.sched_getaffinity(0)) * 1000
    quota, period = (
        _read(_own_cgroup_file("cpu", "cpu.cfs_quota_us")),
        _read(_own_cgroup_file("cpu", "cpu.cfs_period_us")),
    )
    if quota.lstrip("-").isdigit() and period.isdigit() and int(quota) > 0 and int(period) > 0:
        cpus = min(cpus, int(quota) * 1000 // int(period))
    v2 = _read(_own_cgroup_file("", "cpu.max")).split()
    if len(v2) == 2 and v2[0].isdigit() and v2[1].isdigit():
        cpus = min(cpus, int(v2[0]) * 1000 // int(v2[1]))
    return max(1, cpus)


def memory_bytes_available() -> int:
    total = os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    for text in (
        _read(_own_cgroup_file("memory", "memory.limit_in_bytes")),
        _read(_own_cgroup_file("", "memory.max")),
    ):
        if text.isdigit() and 0 < int(text) < _UNLIMITED:
            total = min(total, int(text))
    return total


def net_mbps_available(sys_class_net: Path = Path("/sys/class/net")) -> int:
    best = 0
    try:
        interfaces = sorted(sys_class_net.iterdir())
    except OSError:
        return DEFAULT_NET_MBPS
    for interface in interfaces:
        if interface.name == "lo":
            continue
        speed = _read(interface / "speed")
        if speed.isdigit():
            best = max(best, int(speed))
    return best or DEFAULT_NET_MBPS


def detect_capacity(root: Path, config: MachineConfig | None = None) -> dict[str, int]:
    """``{"cpu", "memory", "disk", "net"}`` of this machine, overrides from ``config`` applied."""
    config = config or MachineConfig()
    config.validate()
    return {
        "cpu": config.cpu_millis or cpu_millis_available(),
        "memory": config.memory_bytes or memory_bytes_available(),
        "disk": config.disk_bytes or shutil.disk_usage(root).free,
        "net": config.net_mbps or net_mbps_available(),
    }


def machine_health(root: Path, config: MachineConfig | None = None) -> MachineHealth:
    """Whether this machine should get new grants; call it each heartbeat."""
    config = config or MachineConfig()
    try:
        usage = shutil.disk_usage(root)
    except OSError as exc:
        return MachineHealth(False, [f"cannot measure the disk of {root}: {exc.strerror or exc}"])
    reasons: list[str] = []
    used = (usage.total - usage.free) / usage.total if usage.total else 1.0
    if used > config.disk_full_ratio or usage.free < config.min_free_disk_bytes:
        reasons.append(
            f"disk of {root} is {used:.0%} full ({usage.free >> 20} MiB free; unhealthy above "
            f"{config.disk_full_ratio:.0%} or below {config.min_free_disk_bytes >> 20} MiB free)"
        )
    return MachineHealth(not reasons, reasons)
