"""The Tubo agent of one machine: heartbeats to FuxiMaster, carries out its orders, and serves the processes it
started over a Unix socket (docs/sched.md, "Tubo").

* **Heartbeats** (every ``heartbeat_s``, through the kit's :class:`~feitian.replica.Router` to whichever
  FuxiMaster leads): capacity (detected, or as configured so one laptop can pose as several machines), health,
  and the processes that changed since the last answered heartbeat — every process when the master asks
  (``send_full``: a new master rebuilding its soft state, or this Tubo unknown to it). The reply carries orders
  (start an application master, kill a process) and the master's epoch: orders of an epoch older than the newest
  seen are ignored, so a deposed master cannot act.
* **Processes** run under :class:`~feitian.sched.tubo.supervisor.ProcessSupervisor` (own cgroup and working
  directory each; they outlive this agent, and a restarted agent re-adopts them). What FuxiMaster needs to know
  about each (its application, grant, unit, kind) is kept beside it in ``<root>/meta/<proc id>``.
* **The local socket** (``unix://<run dir>/<node>.tubo.sock``): an application master or worker calls its Tubo
  here, with no credential. The kernel tells the Tubo the caller's pid (SO_PEERCRED); the pid's cgroup (or,
  without cgroups, its parent chain) tells which process of which application it is. The Tubo fills in that
  application and forwards the call — to FuxiMaster (register, demand, events) or to the Tubo of the grant's
  machine (start, stop, list workers). A process can therefore only act for its own application.
* **Workers**: ``tubo.StartWorker`` (from another Tubo, or forwarded from the local socket) checks the grant
  with FuxiMaster (it must be live, of that application, on this machine) and starts the worker with the
  grant's CPU and memory as its cgroup limits. One grant runs one worker at a time.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
import os
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

import msgspec

from feitian.base.clock import Clock, MonotonicClock
from feitian.coord import CoordClient
from feitian.dfs import DfsClient
from feitian.errors import (
    ConflictError,
    FeitianError,
    InvalidArgumentError,
    NotFoundError,
    PermissionDeniedError,
)
from feitian.replica import Router
from feitian.rpc import CallContext, Client, Server
from feitian.runtime.files import atomic_write, ensure_dir
from feitian.runtime.periodic import PeriodicTask
from feitian.sched.core import Grant
from feitian.sched.messages import (
    TUBO_RULES,
    WAITING,
    AmDemand,
    AmDemandReply,
    AmEvents,
    AmEventsReply,
    AmRegister,
    AmRegistered,
    AppIdentity,
    CheckGrant,
    GetAppIdentity,
    KillProcess,
    ListWorkers,
    LocalWhoAmI,
    LogChunk,
    Order,
    ProcKind,
    ProcReport,
    ReadLog,
    StartProcess,
    StartWorker,
    StopWorker,
    TuboHeartbeat,
    WhoAmIReply,
    WorkerInfo,
)
from feitian.sched.pkg import DEFAULT_ROOT, PackageCache, PackageRef, PackageStore
from feitian.sched.tubo.identity import AppIdentities, identity_env, identity_files
from feitian.sched.tubo.logs import LogLimits, LogStream
from feitian.sched.tubo.machine import MachineConfig, detect_capacity, machine_health
from feitian.sched.tubo.procs import ProcessSpec, ProcessStatus, ProcState
from feitian.sched.tubo.supervisor import ProcessSupervisor

__all__ = ["ProcMeta", "Tubo", "TuboOptions", "default_cgroup_prefix"]

log = logging.getLogger(__name__)

WORKER_NAME = re.compile(r"^[A-Za-z0-9._-]{1,64}$")
DEFAULT_CPU_MILLIS = 1000
DEFAULT_MEMORY_BYTES = 256 << 20


class TuboOptions(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    masters: list[str]  # FuxiMaster addresses
    machine: str = ""  # this machine's name for the scheduler (default: the node's name)
    rack: str = "r1"
    capacity: dict[str, int] = msgspec.field(default_factory=dict)  # overrides of the detected capacity
    root: str = ""  # processes' records and working directories (default: <data dir>/tubo)
    socket: str = ""  # the local socket (default: <run dir>/<node name>.tubo.sock)
    heartbeat_s: float = 1.0
    cgroup_prefix: str = ""  # default: feitian/<node name>
    use_cgroups: bool = True
    max_processes: int = 1_000
    disk_full_ratio: float = 0.95
    min_free_disk_bytes: int = 1 << 30
    app_uids: tuple[int, int] | None = None  # run each application as its own uid from [first, last] (root only)
    coord: list[str] = msgspec.field(default_factory=list)  # Nuwa replicas: package records (feitian pkg)
    dfs: list[str] = msgspec.field(default_factory=list)  # Pangu masters: package blobs
    packages_root: str = DEFAULT_ROOT
    package_cache_bytes: int = 4 << 30  # unpacked packages kept on this machine (least recently used go first)
    # Processes' output (docs/sched.md, "Logs"): the tail kept per process and stream, and how many ended
    # processes' logs this machine keeps, how many bytes in all and how long (the oldest go first).
    log_max_stream_bytes: int = 8 << 20
    log_retain_count: int = 1_000
    log_retain_bytes: int = 1 << 30
    log_retain_age_s: float = 7 * 86_400.0


class ProcMeta(msgspec.Struct, frozen=True, kw_only=True):
    """What the master needs to know of a process besides its status (kept in ``<root>/meta/<proc id>``)."""

    app_id: str
    kind: ProcKind
    grant_id: int
    unit: str
    shape: dict[str, int]
    attempt: int = 0
    name: str = ""  # a worker's name in its application
    package_digest: str = ""  # the cached package it runs in (pinned while it runs)

    def report(self, proc_id: str, state: str, exit_code: int | None, reason: str) -> ProcReport:
        """The process as the master hears of it."""
        return ProcReport(
            proc_id=proc_id,
            app_id=self.app_id,
            kind=self.kind,
            grant_id=self.grant_id,
            unit=self.unit,
            shape=self.shape,
            state=state,
            attempt=self.attempt,
            exit_code=exit_code,
            detail=reason,
        )


class Tubo:
    def __init__(
        self,
        rpc: Client,
        options: TuboOptions,
        *,
        node_name: str,
        data_dir: str,
        run_dir: str,
        clock: Clock | None = None,
    ) -> None:
        self.rpc = rpc
        self.options = options
        self.name = node_name
        self.machine = options.machine or node_name
        self.clock = clock or MonotonicClock()
        self.root = Path(options.root or os.path.join(data_dir, "tubo"))
        self.socket_path = options.socket or os.path.join(run_dir, f"{node_name}.tubo.sock")
        self.machine_config = MachineConfig(
            cpu_millis=options.capacity.get("cpu"),
            memory_bytes=options.capacity.get("memory"),
            disk_bytes=options.capacity.get("disk"),
            net_mbps=options.capacity.get("net"),
            disk_full_ratio=options.disk_full_ratio,
            min_free_disk_bytes=options.min_free_disk_bytes,
        )
        self.machine_config.validate()
        self.supervisor = ProcessSupervisor(
            self.root,
            cgroup_prefix=options.cgroup_prefix or default_cgroup_prefix(node_name, self.root),
            clock=self.clock,
            max_processes=options.max_processes,
            use_cgroups=options.use_cgroups,
            app_uids=options.app_uids,
            log_limits=LogLimits(
                max_stream_bytes=options.log_max_stream_bytes,
                retain_count=options.log_retain_count,
                retain_bytes=options.log_retain_bytes,
                retain_age_s=options.log_retain_age_s,
            ),
        )
        self.capacity = detect_capacity(self.root, self.machine_config)  # once: free disk would change each beat
        self.packages: PackageStore | None = None
        self.cache: PackageCache | None = None
        self._coord: CoordClient | None = None
        if options.coord and options.dfs:
            self._coord = CoordClient(rpc, options.coord, clock=self.clock)
            dfs = DfsClient(rpc, list(options.dfs), clock=self.clock)
            self.packages = PackageStore(self._coord, dfs, root=options.packages_root, clock=self.clock)
            self.cache = PackageCache(self.root / "packages", options.package_cache_bytes, self.packages.open_blob)
        self._starting: set[asyncio.Task[None]] = set()
        self.meta_dir = ensure_dir(self.root / "meta")
        self.meta: dict[str, ProcMeta] = {}
        self.router = Router(rpc, options.masters, service="FuxiMaster", timeout_s=5.0, clock=self.clock)
        self.identities = AppIdentities(self._fetch_identity)
        # Where the cluster's services are, for the processes started here (feitian.sched.AppEnvironment).
        self._service_env = {
            key: ",".join(addresses)
            for key, addresses in (("FEITIAN_COORD", options.coord), ("FEITIAN_DFS", options.dfs))
            if addresses
        }
        self.address = ""
        self.epoch = 0  # the newest master epoch seen
        self.need_full = True
        self.dirty: set[str] = set()  # processes changed since the last answered heartbeat
        self.failed_starts: dict[str, ProcReport] = {}  # orders that could not start a process
        self.waiting: dict[str, str] = {}  # processes being prepared (their package fetched) -> what is done
        self.heartbeats = 0
        self.local = Server()
        self._beat: PeriodicTask | None = None
        self._interval_s = options.heartbeat_s

    # == lifecycle ====================================================================================================

    def register(self, server: Server) -> None:
        """The methods other Tubos call (workers on grants of this machine)."""
        server.add_handler(StartWorker, self._remote_start, requires=TUBO_RULES[StartWorker])
        server.add_handler(StopWorker, self._remote_stop, requires=TUBO_RULES[StopWorker])
        server.add_handler(ListWorkers, self._remote_list, requires=TUBO_RULES[ListWorkers])
        server.add_handler(ReadLog, self._read_log, requires=TUBO_RULES[ReadLog])

    async def start(self, address: Callable[[], str]) -> str:
        """Re-adopt what runs, open the local socket, start heartbeating (``address()``: where this node serves
        other Tubos, once it listens). Returns the local socket's address."""
        self._address_of = address
        for status in self.supervisor.recover():
            self.dirty.add(status.proc_id)
        for path in self.meta_dir.iterdir():
            try:
                self.meta[path.name] = msgspec.json.decode(path.read_bytes(), type=ProcMeta)
            except (OSError, msgspec.DecodeError) as exc:
                log.warning("tubo %s: unreadable process record %s (%s); ignored", self.name, path, exc)
        if self.cache is not None:
            await self.cache.open()
            for proc_id, meta in self.meta.items():  # what runs keeps its package
                if meta.package_digest and self._running(proc_id):
                    with contextlib.suppress(FeitianError):
                        self.cache.pin(meta.package_digest)
        local: dict[type[Any], Any] = {
            AmRegister: self._local_register,
            AmDemand: self._local_demand,
            AmEvents: self._local_events,
            StartWorker: self._local_start,
            StopWorker: self._local_stop,
            ListWorkers: self._local_list,
            LocalWhoAmI: self._local_whoami,
            ReadLog: self._local_read_log,
        }
        for request_type, fn in local.items():
            self.local.add_handler(request_type, fn)
        with contextlib.suppress(FileNotFoundError):
            os.unlink(self.socket_path)
        await self.local.start([f"unix://{self.socket_path}"])
        os.chmod(self.socket_path, 0o666)  # any local process may call: the kernel says who it is
        self._beat = PeriodicTask("tubo-heartbeat", self._heartbeat, self._interval_s, clock=self.clock)
        self._beat.start()
        return f"unix://{self.socket_path}"

    async def stop(self) -> None:
        """Stop heartbeating and serving; the processes keep running (a restarted Tubo re-adopts them)."""
        if self._beat is not None:
            await self._beat.stop()
        await self.local.stop(grace_s=1.0)
        for task in list(self._starting):
            task.cancel()
        await asyncio.gather(*self._starting, return_exceptions=True)
        if self.cache is not None:
            await self.cache.close()
        if self._coord is not None:
            with contextlib.suppress(FeitianError, TimeoutError):
                async with asyncio.timeout(2.0):
                    await self._coord.close()
        self.supervisor.close()

    @property
    def isolation(self) -> str:
        return self.supervisor.isolation

    # == heartbeats and orders ========================================================================================

    def _report(self, proc_id: str) -> ProcReport | None:
        failed = self.failed_starts.get(proc_id)
        if failed is not None:
            return failed
        meta = self.meta.get(proc_id)
        if proc_id in self.waiting and meta is not None:
            return meta.report(proc_id, WAITING, None, self.waiting[proc_id])
        try:
            status = self.supervisor.get(proc_id)
        except NotFoundError:
            return None
        if meta is None:
            return None
        code = status.exit_code if status.exit_code is not None else _signal_code(status)
        return meta.report(proc_id, status.state.value, code, status.detail)

    async def _heartbeat(self) -> float:
        self.address = self.address or self._address_of()
        if not self.address:
            return 0.02  # the node is not listening yet
        for status in self.supervisor.poll():
            self.dirty.add(status.proc_id)
        full = self.need_full
        names = (
            [s.proc_id for s in self.supervisor.list()] + [*self.failed_starts, *self.waiting]
            if full
            else [*self.dirty]
        )
        reports = [r for r in (self._report(n) for n in names) if r is not None]
        health = machine_health(self.root, self.machine_config)
        reasons = list(health.reasons)
        late_s = (self._beat.late_ns if self._beat is not None else 0) / 1e9
        if late_s > max(1.0, 2 * self._interval_s):  # this Tubo cannot keep up: give its machine no new work
            reasons.append(f"tubo lagging: heartbeat {late_s:.1f} s late")
        request = TuboHeartbeat(
            name=self.machine,
            rack=self.options.rack,
            address=self.address,
            capacity=self.capacity,
            healthy=not reasons,
            health_reason="; ".join(reasons),
            isolation=self.isolation,
            full=full,
            procs=reports,
        )
        try:
            reply = await self.router.call(request, leader=True, timeout_s=max(1.0, 2 * self._interval_s))
        except FeitianError as exc:
            log.info("tubo %s: heartbeat not answered: %s", self.name, exc)
            return self._interval_s
        self.heartbeats += 1
        if reply.epoch < self.epoch:
            log.warning("tubo %s: ignoring a master of epoch %d (newest seen %d)", self.name, reply.epoch, self.epoch)
            return self._interval_s
        self.epoch = reply.epoch
        self.need_full = reply.send_full
        if not reply.send_full:
            for report in reports:
                if self._report(report.proc_id) != report:
                    continue  # changed while the heartbeat was out (a package fetched meanwhile): sent again
                self.dirty.discard(report.proc_id)
                if report.state not in (ProcState.RUNNING.value, WAITING):  # heard of by the master: forgotten
                    self._forget(report.proc_id)
        for order in reply.orders:
            self._carry_out(order)
        self._interval_s = reply.interval_s if reply.interval_s > 0 else self.options.heartbeat_s
        # Asked for a full report (a new leader recovering, waiting for every machine): send it at once.
        return 0.0 if reply.send_full else self._interval_s

    def _forget(self, proc_id: str) -> None:
        self.failed_starts.pop(proc_id, None)
        meta = self.meta.pop(proc_id, None)
        if meta is not None and meta.package_digest and self.cache is not None:
            with contextlib.suppress(FeitianError):
                self.cache.unpin(meta.package_digest)
        with contextlib.suppress(FileNotFoundError):
            (self.meta_dir / proc_id).unlink()
        with contextlib.suppress(FeitianError):
            self.supervisor.forget(proc_id)

    def _carry_out(self, order: Order) -> None:
        if isinstance(order, KillProcess):
            with contextlib.suppress(NotFoundError):
                if self.supervisor.get(order.proc_id).state is ProcState.RUNNING:
                    log.info("tubo %s: stopping %s (%s)", self.name, order.proc_id, order.detail)
                    self.supervisor.stop(order.proc_id, order.grace_s)
            return
        assert isinstance(order, StartProcess)
        if order.proc_id in self.meta or order.proc_id in self.failed_starts:
            return  # already started (the order is repeated until a heartbeat reports it)
        meta = ProcMeta(
            app_id=order.app_id,
            kind=ProcKind.MASTER,
            grant_id=order.grant.grant_id,
            unit=order.grant.unit,
            shape=order.grant.shape.as_dict(),
            attempt=order.attempt,
            package_digest=order.package.digest if order.package else "",
        )
        # The application's identity and package may have to be fetched first: in a task of its own, not in the
        # heartbeat. Meanwhile the process is reported as waiting (the master repeats the order until it is
        # reported otherwise).
        self.meta[order.proc_id] = meta  # the order is not carried out twice meanwhile
        what = f"fetching package {order.package.spec}" if order.package else "fetching its application's identity"
        self._wait(order.proc_id, what)
        task = asyncio.get_running_loop().create_task(self._start_later(order, meta))
        self._starting.add(task)
        task.add_done_callback(self._starting.discard)

    async def _start_later(self, order: StartProcess, meta: ProcMeta) -> None:
        package_dir = ""
        try:
            try:
                identity = await self.identities.get(order.app_id)
            except FeitianError as exc:
                self._start_failed(order.proc_id, meta, f"the application's identity: {exc.message}")
                return
            if order.package is not None:
                try:
                    package_dir = await self._package(order.package)
                except FeitianError as exc:
                    self._start_failed(order.proc_id, meta, f"package {order.package.spec}: {exc.message}")
                    return
                except Exception as exc:  # the task's boundary: the process must not stay waiting forever
                    detail = f"package {order.package.spec}: {type(exc).__name__}: {exc}"
                    self._start_failed(order.proc_id, meta, detail)
                    return
        finally:
            self.waiting.pop(order.proc_id, None)
        self._start(order.proc_id, meta, list(order.command), dict(order.env), order.grant, package_dir, identity)

    async def _fetch_identity(self, app_id: str) -> AppIdentity | None:
        reply = await self.router.call(GetAppIdentity(app_id), leader=True, timeout_s=5.0)
        return reply.identity

    async def _package(self, ref: PackageRef) -> str:
        """The package unpacked on this machine and pinned (the caller's process unpins it when forgotten)."""
        if self.cache is None:
            raise InvalidArgumentError(
                f"tubo {self.name} cannot fetch packages: its [role] section names no coord and dfs addresses"
            )
        return str(await self.cache.ensure(ref, pin=True))

    def _wait(self, proc_id: str, what: str) -> None:
        self.waiting[proc_id] = what
        self.dirty.add(proc_id)
        if self._beat is not None:
            self._beat.wake()

    def _start_failed(self, proc_id: str, meta: ProcMeta, reason: str) -> None:
        log.warning("tubo %s: could not start %s: %s", self.name, proc_id, reason)
        self.failed_starts[proc_id] = meta.report(proc_id, ProcState.FAILED.value, 127, f"could not start: {reason}")
        self.meta[proc_id] = meta
        self.dirty.add(proc_id)
        if self._beat is not None:
            self._beat.wake()

    def _start(
        self,
        proc_id: str,
        meta: ProcMeta,
        command: list[str],
        env: dict[str, str],
        grant: Grant,
        package_dir: str = "",
        identity: AppIdentity | None = None,
    ) -> None:
        env = {
            **env,
            **self._service_env,
            "FEITIAN_TUBO_SOCKET": f"unix://{self.socket_path}",
            "FEITIAN_MACHINE": self.machine,
            "FEITIAN_GRANT_ID": str(grant.grant_id),
            "FEITIAN_ATTEMPT": str(meta.attempt),
        }
        files = None
        if identity is not None:
            env.update(identity_env(identity, self.supervisor.work_dir(proc_id)))
            files = identity_files(identity)
        spec = ProcessSpec(
            proc_id=proc_id,
            app_id=meta.app_id,
            argv=command,
            env=env,
            cpu_millis=grant.shape.get("cpu") or DEFAULT_CPU_MILLIS,
            memory_bytes=grant.shape.get("memory") or DEFAULT_MEMORY_BYTES,
            package_dir=package_dir,
        )
        try:
            atomic_write(self.meta_dir / proc_id, msgspec.json.encode(meta))
            self.meta[proc_id] = meta
            self.supervisor.start(spec, files)
        except FeitianError as exc:
            self._start_failed(proc_id, meta, exc.message)
            return
        self.dirty.add(proc_id)
        if self._beat is not None:
            self._beat.wake()  # tell the master soon

    # == the local socket =============================================================================================

    def _caller(self, ctx: CallContext) -> tuple[str, ProcMeta]:
        """The process of this Tubo that is calling (by its pid, as the kernel reports it)."""
        pid = ctx.peer.pid
        if pid <= 0:
            raise PermissionDeniedError("tubo: the caller's process is unknown (not a local Unix socket)")
        proc_id = self._proc_of_pid(pid)
        meta = self.meta.get(proc_id) if proc_id else None
        if proc_id is None or meta is None:
            raise PermissionDeniedError(
                f"tubo {self.name}: process {pid} was not started by this Tubo",
                hint="only application masters and workers this Tubo started may call it",
            )
        return proc_id, meta

    def _proc_of_pid(self, pid: int) -> str | None:
        running = [s for s in self.supervisor.list() if s.state is ProcState.RUNNING]
        known = {s.proc_id for s in running}
        prefix = "/" + self.supervisor.cgroups.prefix.strip("/") + "/" if self.supervisor.cgroups else None
        with contextlib.suppress(OSError):
            for line in Path(f"/proc/{pid}/cgroup").read_text().splitlines():
                path = line.split(":", 2)[-1]
                head, _, leaf = path.rpartition("/")
                if prefix is not None and head + "/" == prefix and leaf in known:
                    return leaf
        # Without cgroups: the caller or one of its ancestors is a process this Tubo started.
        pids = {s.pid: s.proc_id for s in running if s.pid}
        seen = 0
        while pid > 1 and seen < 64:
            if pid in pids:
                return pids[pid]
            pid = _parent_of(pid)
            seen += 1
        return None

    def _master_caller(self, ctx: CallContext) -> tuple[str, ProcMeta]:
        proc_id, meta = self._caller(ctx)
        if meta.kind is not ProcKind.MASTER:
            raise PermissionDeniedError(f"tubo: {proc_id} is a worker; only its application's master may do that")
        return proc_id, meta

    async def _local_whoami(self, ctx: CallContext, req: LocalWhoAmI) -> WhoAmIReply:
        proc_id, meta = self._caller(ctx)
        return WhoAmIReply(
            app_id=meta.app_id, proc_id=proc_id, kind=meta.kind, machine=self.machine, attempt=meta.attempt
        )

    async def _local_register(self, ctx: CallContext, req: AmRegister) -> AmRegistered:
        _, meta = self._master_caller(ctx)
        forward = msgspec.structs.replace(req, app_id=meta.app_id, attempt=meta.attempt)
        return await self.router.call(forward, leader=True, timeout_s=10.0)

    async def _local_demand(self, ctx: CallContext, req: AmDemand) -> AmDemandReply:
        _, meta = self._master_caller(ctx)
        return await self.router.call(msgspec.structs.replace(req, app_id=meta.app_id), leader=True, timeout_s=10.0)

    async def _local_events(self, ctx: CallContext, req: AmEvents) -> AmEventsReply:
        _, meta = self._master_caller(ctx)
        forward = msgspec.structs.replace(req, app_id=meta.app_id)
        return await self.router.call(forward, leader=True, timeout_s=max(1.0, req.wait_s) + 5.0)

    async def _local_start(self, ctx: CallContext, req: StartWorker) -> WorkerInfo:
        _, meta = self._master_caller(ctx)
        forward = msgspec.structs.replace(req, app_id=meta.app_id)
        if req.grant.machine == self.machine:
            return await self._start_worker(forward)
        if not req.address:
            raise InvalidArgumentError(f"start worker: no Tubo address for machine {req.grant.machine!r}")
        return await self.rpc.call(req.address, forward, timeout=10.0)

    async def _local_stop(self, ctx: CallContext, req: StopWorker) -> WorkerInfo:
        _, meta = self._master_caller(ctx)
        forward = msgspec.structs.replace(req, app_id=meta.app_id)
        if req.machine in ("", self.machine):
            return self._stop_worker(forward)
        if not req.address:
            raise InvalidArgumentError(f"stop worker: no Tubo address for machine {req.machine!r}")
        return await self.rpc.call(req.address, forward, timeout=10.0)

    async def _local_list(self, ctx: CallContext, req: ListWorkers) -> list[WorkerInfo]:
        _, meta = self._caller(ctx)
        forward = msgspec.structs.replace(req, app_id=meta.app_id)
        if req.machine in ("", self.machine):
            return self._list_workers(meta.app_id)
        if not req.address:
            raise InvalidArgumentError(f"list workers: no Tubo address for machine {req.machine!r}")
        return await self.rpc.call(req.address, forward, timeout=10.0)

    # == logs ==========================================================================================================

    async def _read_log(self, ctx: CallContext, req: ReadLog) -> LogChunk:
        return self._log_chunk(req.app_id, req)

    async def _local_read_log(self, ctx: CallContext, req: ReadLog) -> LogChunk:
        """A process reads a log of its own application kept on this machine."""
        _, meta = self._caller(ctx)
        return self._log_chunk(meta.app_id, req)

    def _log_chunk(self, app_id: str, req: ReadLog) -> LogChunk:
        try:
            stream = LogStream(req.stream)
        except ValueError:
            raise InvalidArgumentError(f"read log: stream {req.stream!r} is neither stdout nor stderr") from None
        if req.length < 0 or (req.offset is not None and req.offset < 0):
            raise InvalidArgumentError(f"read log: offset {req.offset} and length {req.length} must be 0 or more")
        meta = self.meta.get(req.proc_id)
        ours = meta is not None and meta.app_id == app_id
        if ours and req.proc_id in self.waiting:  # not started yet: nothing written
            return LogChunk(
                proc_id=req.proc_id,
                machine=self.machine,
                stream=stream.value,
                data=b"",
                offset=0,
                first=0,
                end=0,
                running=True,
            )
        try:
            got = self.supervisor.read_log(req.proc_id, app_id, stream, offset=req.offset, length=req.length)
        except NotFoundError:
            failed = self.failed_starts.get(req.proc_id) if ours else None
            why = f"it never started ({failed.detail})" if failed else "its log has expired, or it never ran here"
            raise NotFoundError(
                f"no log of process {req.proc_id!r} of application {app_id!r} on machine {self.machine}: {why}",
                hint='a machine keeps the logs of its last ended processes for a while (docs/sched.md, "Logs")',
                proc_id=req.proc_id,
            ) from None
        return LogChunk(
            proc_id=req.proc_id,
            machine=self.machine,
            stream=stream.value,
            data=got.data,
            offset=got.offset,
            first=got.first,
            end=got.end,
            running=got.running,
        )

    # == workers (called by other Tubos, or forwarded from the local socket) ==========================================

    async def _remote_start(self, ctx: CallContext, req: StartWorker) -> WorkerInfo:
        return await self._start_worker(req)

    async def _remote_stop(self, ctx: CallContext, req: StopWorker) -> WorkerInfo:
        return self._stop_worker(req)

    async def _remote_list(self, ctx: CallContext, req: ListWorkers) -> list[WorkerInfo]:
        return self._list_workers(req.app_id)

    async def _start_worker(self, req: StartWorker) -> WorkerInfo:
        if not WORKER_NAME.match(req.name):
            raise InvalidArgumentError(f"start worker: bad name {req.name!r}", hint="use 1-64 of A-Z a-z 0-9 . _ -")
        if req.grant.machine != self.machine:
            raise InvalidArgumentError(
                f"start worker: grant {req.grant.grant_id} is on {req.grant.machine!r}, this is {self.machine!r}"
            )
        # The master's word on the grant, not the caller's copy: live, this application's, this machine's.
        grant = await self.router.call(
            CheckGrant(req.grant.grant_id, req.app_id, self.machine), leader=True, timeout_s=5.0
        )
        proc_id = f"{req.app_id}.w.{req.name}"
        for other, meta in self.meta.items():
            busy = self._running(other) or other in self.waiting
            if meta.grant_id == grant.grant_id and other not in self.failed_starts and busy:
                raise ConflictError(
                    f"start worker: grant {grant.grant_id} already runs {other}", grant_id=grant.grant_id
                )
        if proc_id in self.meta:
            if self._running(proc_id) or proc_id in self.waiting:
                raise ConflictError(f"start worker: {req.name!r} already runs", proc_id=proc_id)
            self._forget(proc_id)  # an ended worker of that name: start again under the same name
        ref: PackageRef | None = None
        if req.package:
            if self.packages is None:
                raise InvalidArgumentError(
                    f"tubo {self.name} cannot fetch packages: its [role] section names no coord and dfs addresses"
                )
            ref = await self.packages.resolve(req.package)
        meta = ProcMeta(
            app_id=req.app_id,
            kind=ProcKind.WORKER,
            grant_id=grant.grant_id,
            unit=grant.unit,
            shape=grant.shape.as_dict(),
            name=req.name,
            package_digest=ref.digest if ref else "",
        )
        package_dir = await self._fetch_for_worker(proc_id, meta, ref) if ref else ""
        env = {**req.env, "FEITIAN_WORKER": req.name}
        identity = await self.identities.get(req.app_id)
        self._start(proc_id, meta, list(req.command), env, grant, package_dir, identity)
        return self._worker_info(proc_id)

    async def _fetch_for_worker(self, proc_id: str, meta: ProcMeta, ref: PackageRef) -> str:
        """The worker's package, the worker reported as waiting meanwhile; a fetch that fails ends it as failed
        (reported, so its master hears of it) and raises to the caller."""
        self.meta[proc_id] = meta
        self._wait(proc_id, f"fetching package {ref.spec}")
        try:
            return await self._package(ref)
        except FeitianError as exc:
            self._start_failed(proc_id, meta, f"package {ref.spec}: {exc.message}")
            raise
        except Exception as exc:  # reported, or the worker would stay waiting in FuxiMaster's view
            self._start_failed(proc_id, meta, f"package {ref.spec}: {type(exc).__name__}: {exc}")
            raise
        finally:
            self.waiting.pop(proc_id, None)

    def _running(self, proc_id: str) -> bool:
        try:
            return self.supervisor.get(proc_id).state is ProcState.RUNNING
        except NotFoundError:
            return False

    def _stop_worker(self, req: StopWorker) -> WorkerInfo:
        proc_id = f"{req.app_id}.w.{req.name}"
        meta = self.meta.get(proc_id)
        if meta is None or meta.app_id != req.app_id:
            raise NotFoundError(f"stop worker: application {req.app_id} has no worker {req.name!r} here")
        if self._running(proc_id):
            self.supervisor.stop(proc_id, req.grace_s)
        return self._worker_info(proc_id)

    def _list_workers(self, app_id: str) -> list[WorkerInfo]:
        return [
            self._worker_info(proc_id)
            for proc_id, meta in sorted(self.meta.items())
            if meta.app_id == app_id and meta.kind is ProcKind.WORKER
        ]

    def _worker_info(self, proc_id: str) -> WorkerInfo:
        meta = self.meta[proc_id]
        failed = self.failed_starts.get(proc_id)
        if failed is not None:
            state, code, reason = failed.state, failed.exit_code, failed.detail
        elif proc_id in self.waiting:
            state, code, reason = WAITING, None, self.waiting[proc_id]
        else:
            try:
                status = self.supervisor.get(proc_id)
                state, code, reason = status.state.value, status.exit_code, status.detail
            except NotFoundError:
                state, code, reason = ProcState.LOST.value, None, "no record"
        return WorkerInfo(
            proc_id=proc_id,
            app_id=meta.app_id,
            machine=self.machine,
            grant_id=meta.grant_id,
            state=state,
            exit_code=code,
            detail=reason,
        )


def default_cgroup_prefix(node_name: str, root: Path) -> str:
    """``feitian/<node>-<hash of its root>``: two clusters on one machine never share a cgroup."""
    digest = hashlib.sha256(str(root.resolve()).encode()).hexdigest()[:8]
    return f"feitian/{node_name}-{digest}"


def _signal_code(status: ProcessStatus) -> int | None:
    return 128 + status.signal if status.signal is not None else None


def _parent_of(pid: int) -> int:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("PPid:"):
                return int(line.split()[1])
    except (OSError, ValueError):
        pass
    return 0
