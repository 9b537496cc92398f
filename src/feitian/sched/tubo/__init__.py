"""Tubo's machine-local half: start, isolate (cgroup v1), watch, stop and re-adopt this machine's processes, and
measure the machine (docs/sched.md, "Tubo: processes on a machine")."""

from feitian.sched.tubo.machine import MachineConfig, MachineHealth, detect_capacity, machine_health
from feitian.sched.tubo.procs import ProcessSpec, ProcessStatus, ProcState
from feitian.sched.tubo.supervisor import ProcessSupervisor

__all__ = [
    "MachineConfig",
    "MachineHealth",
    "ProcState",
    "ProcessSpec",
    "ProcessStatus",
    "ProcessSupervisor",
    "detect_capacity",
    "machine_health",
]
