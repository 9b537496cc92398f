"""Fuxi (伏羲), the resource manager (docs/sched.md): FuxiMaster grants multi-dimensional resources on machines to
applications; a Tubo agent on every machine starts their processes; packages carry their programs.

* :mod:`feitian.sched.core` — the pure allocator (resources, the incremental protocol, the policies, invariants);
* :mod:`feitian.sched.master` — the FuxiMaster service (``state.py`` pure, ``service.py`` its driver);
* :mod:`feitian.sched.tubo` — the Tubo agent and its process supervisor;
* :mod:`feitian.sched.pkg` — packages (docs/pkg.md); :mod:`feitian.sched.client` — the clients;
* ``roles.py`` — the ``fuxi-master`` and ``tubo`` node roles.

Other components import only through this root (ARCHITECTURE.md, Layers); what it exports is loaded on first use.
"""

from typing import TYPE_CHECKING

from feitian.base.lazy import lazy_attributes

if TYPE_CHECKING:
    from feitian.sched.appenv import AppEnvironment
    from feitian.sched.bench import bench_core, bench_memory
    from feitian.sched.client import AppMaster, SchedClient, SyncAppMaster, SyncSchedClient
    from feitian.sched.credentials import AppGrant, app_credentials, parse_grant
    from feitian.sched.messages import (
        AM_UNIT,
        AmDemand,
        AmEvents,
        AmRegister,
        AppInfo,
        AppState,
        KillProcess,
        LogChunk,
        MasterStatus,
        MasterStatusReply,
        NodeInfo,
        ProcInfo,
        ProcKind,
        ProcReport,
        QuotaInfo,
        StartProcess,
        TuboHeartbeat,
        WorkerEnded,
        WorkerInfo,
    )
    from feitian.sched.pkg import (
        DEFAULT_ROOT,
        PackageCache,
        PackageLimits,
        PackageRef,
        PackageStore,
        pack,
        parse_spec,
        validate_name,
    )
    from feitian.sched.roles import FuxiMasterRole, TuboRole
    from feitian.sched.tubo.agent import default_cgroup_prefix
    from feitian.sched.tubo.cleanup import stop_started

_LAZY = {
    "AM_UNIT": "feitian.sched.messages",
    "AmDemand": "feitian.sched.messages",  # the wire messages below: for simulated Tubos and masters (bench sched)
    "AmEvents": "feitian.sched.messages",
    "AmRegister": "feitian.sched.messages",
    "AppEnvironment": "feitian.sched.appenv",
    "AppGrant": "feitian.sched.credentials",
    "AppInfo": "feitian.sched.messages",
    "AppMaster": "feitian.sched.client",
    "AppState": "feitian.sched.messages",
    "DEFAULT_ROOT": "feitian.sched.pkg",
    "FuxiMasterRole": "feitian.sched.roles",
    "KillProcess": "feitian.sched.messages",
    "LogChunk": "feitian.sched.messages",
    "MasterStatus": "feitian.sched.messages",
    "MasterStatusReply": "feitian.sched.messages",
    "NodeInfo": "feitian.sched.messages",
    "PackageCache": "feitian.sched.pkg",
    "PackageLimits": "feitian.sched.pkg",
    "PackageRef": "feitian.sched.pkg",
    "PackageStore": "feitian.sched.pkg",
    "ProcInfo": "feitian.sched.messages",
    "ProcKind": "feitian.sched.messages",
    "ProcReport": "feitian.sched.messages",
    "QuotaInfo": "feitian.sched.messages",
    "SchedClient": "feitian.sched.client",
    "StartProcess": "feitian.sched.messages",
    "SyncAppMaster": "feitian.sched.client",
    "SyncSchedClient": "feitian.sched.client",
    "TuboHeartbeat": "feitian.sched.messages",
    "TuboRole": "feitian.sched.roles",
    "WorkerEnded": "feitian.sched.messages",
    "WorkerInfo": "feitian.sched.messages",
    "bench_core": "feitian.sched.bench",
    "bench_memory": "feitian.sched.bench",
    "default_cgroup_prefix": "feitian.sched.tubo.agent",
    "app_credentials": "feitian.sched.credentials",
    "pack": "feitian.sched.pkg",
    "parse_grant": "feitian.sched.credentials",
    "parse_spec": "feitian.sched.pkg",
    "stop_started": "feitian.sched.tubo.cleanup",
    "validate_name": "feitian.sched.pkg",
}


__getattr__ = lazy_attributes(__name__, _LAZY)


__all__ = [
    "AM_UNIT",
    "DEFAULT_ROOT",
    "AmDemand",
    "AmEvents",
    "AmRegister",
    "AppEnvironment",
    "AppGrant",
    "AppInfo",
    "AppMaster",
    "AppState",
    "FuxiMasterRole",
    "KillProcess",
    "LogChunk",
    "MasterStatus",
    "MasterStatusReply",
    "NodeInfo",
    "PackageCache",
    "PackageLimits",
    "PackageRef",
    "PackageStore",
    "ProcInfo",
    "ProcKind",
    "ProcReport",
    "QuotaInfo",
    "SchedClient",
    "StartProcess",
    "SyncAppMaster",
    "SyncSchedClient",
    "TuboHeartbeat",
    "TuboRole",
    "WorkerEnded",
    "WorkerInfo",
    "app_credentials",
    "bench_core",
    "bench_memory",
    "default_cgroup_prefix",
    "pack",
    "parse_grant",
    "parse_spec",
    "stop_started",
    "validate_name",
]
