"""The FuxiMaster's state between its inputs and its orders — pure: no I/O, no clock, no asyncio.

It owns the :class:`~feitian.sched.core.Allocator` and what the allocator does not know: the applications' hard
records, the machines' addresses and processes as their Tubos report them, the orders waiting for each Tubo's
next heartbeat, and each application's event log (grants, notices, revocations) that its master long-polls.

Two allocator applications stand for one submitted application ``A``: ``A`` itself (the units its master asks
for, by the incremental protocol) and ``A#am`` (the one unit of its master process, which FuxiMaster asks for on
its behalf). Both have the application's priority and quota group.

Grant ids are ``epoch << 40 | n``: a new leader never hands out an id an old one used.

Failover (FUXI-11): a new leader loads the hard records (:meth:`load`), then *recovers* for a while: Tubos'
full reports and application masters' re-registrations tell it which grants exist (adopted, nothing killed or
sent), and it grants nothing new. When recovery ends (:meth:`end_recovery`) it asks for a master process for
every live application whose master nobody reported.
"""

from __future__ import annotations

import collections
import itertools
from collections.abc import Iterable
from dataclasses import dataclass, field

import msgspec

from feitian.errors import (
    ConflictError,
    FeitianError,
    InvalidArgumentError,
    NotFoundError,
    OverloadedError,
)
from feitian.sched.core import (
    DEFAULT_LIMITS,
    DEFAULT_POLICY,
    Allocator,
    AppSpec,
    AskResync,
    DemandDelta,
    DemandSnapshot,
    Effect,
    Grant,
    MachineSpec,
    Preempt,
    ReturnGrants,
    Revoke,
    SchedLimits,
    SchedPolicy,
    SendGrant,
    Shape,
    UnitSpec,
)
from feitian.sched.messages import (
    AM_UNIT,
    WAITING,
    AmEvent,
    AppEnded,
    AppIdentity,
    AppInfo,
    AppState,
    KillProcess,
    NodeInfo,
    Order,
    ProcInfo,
    ProcKind,
    ProcReport,
    QuotaInfo,
    StartProcess,
    TuboHeartbeat,
    TuboHeartbeatReply,
    WorkerEnded,
)
from feitian.sched.pkg import PackageRef

__all__ = ["AM_SUFFIX", "AppRecord", "MachineGone", "MachineSeen", "MasterLimits", "MasterState", "Persist"]

AM_SUFFIX = "#am"
GRANT_EPOCH_SHIFT = 40
ENDED_STATES = frozenset({AppState.SUCCEEDED, AppState.FAILED, AppState.KILLED})
PROC_ENDED = frozenset({"finished", "failed", "killed", "oom_killed", "lost"})
_SECOND_NS = 1_000_000_000


class MasterLimits(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    max_events_per_app: int = 4_096  # an application's event log; older events are dropped (then: a resync)
    max_command_args: int = 256
    max_arg_bytes: int = 32_768  # one command argument or env entry
    max_command_bytes: int = 262_144  # the command and env together
    max_env: int = 256
    max_attempts: int = 100
    max_procs_per_report: int = 100_000
    kill_grace_s: float = 10.0  # SIGTERM -> SIGKILL when a grant is revoked or an application killed
    max_ended_apps: int = 1_000  # ended applications kept (in memory and in Nuwa); the oldest go first


class AppRecord(msgspec.Struct, kw_only=True):
    """An application's hard state, as stored in Nuwa (``<root>/apps/<app_id>``)."""

    app_id: str
    name: str
    command: list[str]
    package: str = ""  # NAME@VERSION, resolved when submitted
    package_ref: PackageRef | None = None
    env: dict[str, str] = {}
    master_shape: dict[str, int] = {}
    priority: int = 100
    group: str = "default"
    max_attempts: int = 3
    submit_id: str = ""
    state: AppState = AppState.PENDING
    attempts: int = 0
    submitted_at: float = 0.0
    ended_at: float = 0.0
    exit_code: int | None = None
    detail: str = ""
    identity: AppIdentity | None = None  # the application's own principal (docs/sched.md, Security)


class Persist(msgspec.Struct, frozen=True):
    """Effect: write this record to the hard state (the driver does, fenced by the leadership)."""

    record: AppRecord


class MachineSeen(msgspec.Struct, frozen=True):
    """Effect: remember this machine in the hard state, so a later leader waits for its report."""

    name: str


class MachineGone(msgspec.Struct, frozen=True):
    """Effect: forget this machine (lost or removed): a later leader does not wait for it."""

    name: str


@dataclass
class AppRuntime:
    record: AppRecord
    events: collections.deque[tuple[int, AmEvent]] = field(default_factory=collections.deque)
    next_event: int = 1
    am_proc: str = ""  # the current master process, once ordered or reported
    am_machine: str = ""
    am_grant: int = 0


@dataclass
class MachineRuntime:
    name: str
    rack: str
    address: str
    capacity: dict[str, int]
    healthy: bool = True
    health_reason: str = ""
    isolation: str = ""
    last_heartbeat_ns: int = 0
    procs: dict[str, ProcReport] = field(default_factory=dict)
    orders: dict[str, Order] = field(default_factory=dict)  # proc id -> order, sent until the report satisfies it


def _times(n: int) -> str:
    return "once" if n == 1 else f"{n} times"


class MasterState:
    def __init__(
        self,
        epoch: int,
        *,
        limits: SchedLimits | None = None,
        policy: SchedPolicy | None = None,
        master_limits: MasterLimits | None = None,
    ) -> None:
        self.epoch = epoch
        self.alloc = Allocator(limits=limits or DEFAULT_LIMITS, policy=policy or DEFAULT_POLICY)
        self.alloc.next_grant_id = max(self.alloc.next_grant_id, epoch << GRANT_EPOCH_SHIFT)
        self.limits = master_limits or MasterLimits()
        self.apps: dict[str, AppRuntime] = {}
        self.ended: collections.OrderedDict[str, AppRecord] = collections.OrderedDict()
        self.by_submit: dict[str, str] = {}
        self.machines: dict[str, MachineRuntime] = {}
        self.recovering = True
        self.pending_adopt: dict[str, list[tuple[str, Grant]]] = {}  # machine -> (alloc app, grant) not yet known
        # Ended applications' runtimes, so their masters can still read the final events (bounded like ended).
        self.ended_runtime: collections.OrderedDict[str, AppRuntime] = collections.OrderedDict()
        self.expected_machines: set[str] = set()  # machines earlier leaders knew: recovery waits for them
        self.full_reports: set[str] = set()  # machines that sent a full report to this leader
        self._persist: list[object] = []  # Persist effects made outside tick() (heartbeats), taken by the next tick
        self.woken: set[str] = set()  # applications with new events since the driver last looked
        self.forgotten: list[str] = []  # ended applications dropped from memory: the driver deletes their records
        self.now_s = 0.0  # wall clock of the latest tick: ended_at of applications that end in between

    # == hard state ===================================================================================================

    def recovered(self) -> bool:
        """Every machine the previous leaders knew has sent its full report (recovery may end early)."""
        return self.expected_machines <= self.full_reports

    def load(self, records: Iterable[AppRecord], machines: Iterable[str] = ()) -> None:
        """The hard records, in submission order, and the machines earlier leaders knew (a new leader, before
        anything else)."""
        self.expected_machines = set(machines)
        for record in records:
            if record.state in ENDED_STATES:
                self._remember_ended(record)
            else:
                self._admit(record)

    def check_submit(self, record: AppRecord) -> None:
        """Refuse a submission that cannot run (InvalidArgumentError naming what), before it is stored."""
        if not record.command:
            raise InvalidArgumentError("submit: the command is empty", hint="give the program to run and its args")
        if len(record.command) > self.limits.max_command_args:
            raise InvalidArgumentError(f"submit: more than {self.limits.max_command_args} command arguments")
        for arg in [*record.command, *record.env.keys(), *record.env.values()]:
            if len(arg.encode()) > self.limits.max_arg_bytes:
                raise InvalidArgumentError(f"submit: an argument or env entry over {self.limits.max_arg_bytes} bytes")
            if "\x00" in arg:
                raise InvalidArgumentError("submit: an argument or env entry contains a NUL byte")
        total = sum(len(a.encode()) for a in [*record.command, *record.env.keys(), *record.env.values()])
        if total > self.limits.max_command_bytes:
            raise InvalidArgumentError(f"submit: the command and env exceed {self.limits.max_command_bytes} bytes")
        if len(record.env) > self.limits.max_env:
            raise InvalidArgumentError(f"submit: more than {self.limits.max_env} env entries")
        if not 1 <= record.max_attempts <= self.limits.max_attempts:
            raise InvalidArgumentError(f"submit: max_attempts must be 1..{self.limits.max_attempts}")
        if record.group not in self.alloc.quota.groups:
            raise NotFoundError(
                f"submit: quota group {record.group!r} does not exist",
                hint="`feitian sched quota` lists them; an administrator creates one with `feitian sched quota set`",
            )
        self.alloc.space.compile_shape("submit: master shape", Shape.of(record.master_shape))
        low, high = self.alloc.limits.min_priority, self.alloc.limits.max_priority
        if isinstance(record.priority, bool) or not low <= record.priority <= high:
            raise InvalidArgumentError(
                f"submit: priority {record.priority} is outside [{low}, {high}]", hint="smaller = higher priority"
            )
        if len(self.apps) * 2 + 2 > self.alloc.limits.max_apps:
            raise OverloadedError(f"submit: max_apps {self.alloc.limits.max_apps} reached")

    def submit(self, record: AppRecord) -> None:
        """A submission now stored in the hard state."""
        self._admit(record)
        if not self.recovering:
            self._demand_master(self.apps[record.app_id])

    def _admit(self, record: AppRecord) -> None:
        self.alloc.submit_app(AppSpec(record.app_id, record.priority, record.group))
        self.alloc.submit_app(AppSpec(record.app_id + AM_SUFFIX, record.priority, record.group))
        self.apps[record.app_id] = AppRuntime(record)
        if record.submit_id:
            self.by_submit[record.submit_id] = record.app_id

    def _remember_ended(self, record: AppRecord) -> list[Persist]:
        self.ended[record.app_id] = record
        if record.submit_id:
            self.by_submit[record.submit_id] = record.app_id
        while len(self.ended) > self.limits.max_ended_apps:
            _, old = self.ended.popitem(last=False)
            self.by_submit.pop(old.submit_id, None)
            self.ended_runtime.pop(old.app_id, None)
            self.forgotten.append(old.app_id)
        return []

    def record_of(self, app_id: str) -> AppRecord:
        runtime = self.apps.get(app_id)
        if runtime is not None:
            return runtime.record
        record = self.ended.get(app_id)
        if record is None:
            raise NotFoundError(f"application {app_id!r} does not exist", app=app_id)
        return record

    def kill(self, app_id: str, now_s: float) -> list[object]:
        """A user killed the application: effects (Persist first, then orders are queued)."""
        if app_id not in self.apps:
            self.record_of(app_id)  # NotFoundError for an unknown one; an ended one stays as it ended
            return []
        return self._end(app_id, AppState.KILLED, now_s, detail="killed by a user")

    def _end(
        self, app_id: str, state: AppState, now_s: float, *, exit_code: int | None = None, detail: str = ""
    ) -> list[object]:
        runtime = self.apps.pop(app_id)
        record = runtime.record
        record.state = state
        record.ended_at = now_s
        record.exit_code = exit_code
        record.detail = detail
        self.by_submit.pop(record.submit_id, None)
        effects: list[object] = [Persist(record)]
        runtime.events.append((runtime.next_event, AppEnded(app_id, state)))
        runtime.next_event += 1
        self.woken.add(app_id)
        for name in (app_id, app_id + AM_SUFFIX):
            for effect in self.alloc.finish_app(name):
                self._apply(effect, effects)
        # What still runs of it anywhere is stopped (its grants are revoked above; processes without one too).
        for machine in self.machines.values():
            for proc in machine.procs.values():
                if proc.app_id == app_id and proc.state not in PROC_ENDED:
                    machine.orders[proc.proc_id] = KillProcess(
                        proc_id=proc.proc_id, grace_s=self.limits.kill_grace_s, detail=f"application {state.value}"
                    )
        self.ended_runtime[app_id] = runtime
        self._remember_ended(record)
        return effects

    # == application masters ==========================================================================================

    def runtime(self, app_id: str) -> AppRuntime:
        runtime = self.apps.get(app_id)
        if runtime is None:
            record = self.record_of(app_id)
            raise ConflictError(
                f"application {app_id} has ended ({record.state.value})", app=app_id, state=record.state.value
            )
        return runtime

    def am_register(self, app_id: str, held: list[Grant], now_ns: int) -> int:
        """An application master (re-)registered; during recovery its held grants are adopted. Returns the seq
        its next message must carry."""
        self.runtime(app_id)  # refuses an ended or unknown application
        if self.recovering:
            for grant in held:
                if grant.app != app_id or self.alloc.grant(grant.grant_id) is not None:
                    continue
                self._adopt(app_id, grant, now_ns)
        return self.alloc.apps[app_id].expected_seq

    def am_demand(
        self, app_id: str, messages: list[DemandDelta | ReturnGrants | DemandSnapshot], now_ns: int
    ) -> list[AskResync]:
        self.runtime(app_id)
        out: list[AskResync] = []
        for message in messages:
            if message.app != app_id:
                raise InvalidArgumentError(
                    f"demand: message names application {message.app!r}, the caller is {app_id!r}", app=app_id
                )
            for effect in self.alloc.handle(message, now_ns):
                if isinstance(effect, AskResync):
                    out.append(effect)
        return out

    def events_after(self, app_id: str, after: int, epoch: int) -> tuple[list[AmEvent], int, dict[str, str]]:
        """The events of ``app_id`` after ``after`` (all of them when ``epoch`` is not ours), the number to ask
        after next, and the Tubo address of every machine the events name."""
        runtime = self.apps.get(app_id) or self.ended_runtime.get(app_id)
        if runtime is None:
            self.record_of(app_id)
            return [], after, {}
        if epoch != self.epoch:
            after = 0
        # Event numbers are consecutive: the first one wanted is at a known place in the log.
        first = runtime.events[0][0] if runtime.events else after + 1
        events = [e for _, e in itertools.islice(runtime.events, max(0, after + 1 - first), None)]
        if runtime.events and after + 1 < runtime.events[0][0]:
            events.insert(
                0, AskResync(app_id, self.alloc.apps[app_id].expected_seq if app_id in self.alloc.apps else 0, -1)
            )
        machines: dict[str, str] = {}
        for event in events:
            grant = getattr(event, "grant", None)
            if grant is not None and grant.machine in self.machines:
                machines[grant.machine] = self.machines[grant.machine].address
        last = runtime.events[-1][0] if runtime.events else after
        return events, max(after, last), machines

    def last_event(self, app_id: str) -> int:
        runtime = self.apps.get(app_id)
        return runtime.events[-1][0] if runtime is not None and runtime.events else 0

    def check_grant(self, grant_id: int, app_id: str, machine: str) -> Grant:
        grant = self.alloc.grant(grant_id)
        if grant is None or grant.app != app_id or grant.machine != machine:
            raise NotFoundError(
                f"grant {grant_id} is not a live grant of application {app_id!r} on machine {machine!r}",
                grant_id=grant_id,
            )
        return grant

    # == Tubos ========================================================================================================

    def heartbeat(self, hb: TuboHeartbeat, now_ns: int, interval_s: float) -> TuboHeartbeatReply:
        machine = self.machines.get(hb.name)
        if machine is None:
            if not hb.full:
                return TuboHeartbeatReply(epoch=self.epoch, send_full=True, interval_s=interval_s)
            if len(hb.procs) > self.limits.max_procs_per_report:
                raise InvalidArgumentError(f"heartbeat: more than {self.limits.max_procs_per_report} processes")
            self.alloc.add_machine(MachineSpec(hb.name, hb.rack, dict(hb.capacity)), now_ns)
            machine = self.machines[hb.name] = MachineRuntime(hb.name, hb.rack, hb.address, dict(hb.capacity))
            if hb.name not in self.expected_machines:
                self.expected_machines.add(hb.name)
                self._persist.append(MachineSeen(hb.name))
            for app, grant in self.pending_adopt.pop(hb.name, []):
                if self.alloc.grant(grant.grant_id) is None:
                    self._adopt(app, grant, now_ns)
        self.alloc.machine_heartbeat(hb.name, now_ns)
        machine.last_heartbeat_ns = now_ns
        machine.address = hb.address
        machine.isolation = hb.isolation
        if hb.healthy != machine.healthy:
            self.alloc.set_machine_health(hb.name, hb.healthy, now_ns)
            machine.healthy = hb.healthy
        machine.health_reason = hb.health_reason
        if hb.full:
            self.full_reports.add(hb.name)
            reported = {p.proc_id for p in hb.procs}
            for proc_id in [p for p in machine.procs if p not in reported]:
                del machine.procs[proc_id]
        for proc in hb.procs:
            self._proc_report(machine, proc, now_ns)
        orders = list(machine.orders.values())
        for order in orders:  # a kill of a process the Tubo no longer has is done once sent
            if isinstance(order, KillProcess) and order.proc_id not in machine.procs:
                del machine.orders[order.proc_id]
        return TuboHeartbeatReply(epoch=self.epoch, orders=orders, interval_s=interval_s)

    def _proc_report(self, machine: MachineRuntime, proc: ProcReport, now_ns: int) -> None:
        known = machine.procs.get(proc.proc_id)
        machine.procs[proc.proc_id] = proc
        order = machine.orders.get(proc.proc_id)
        if isinstance(order, StartProcess) and proc.state != WAITING:
            del machine.orders[proc.proc_id]  # the Tubo has it (repeated while waiting: a restarted Tubo needs it)
        ended = proc.state in PROC_ENDED
        runtime = self.apps.get(proc.app_id)
        alloc_app = proc.app_id + (AM_SUFFIX if proc.kind is ProcKind.MASTER else "")
        if runtime is None:
            if not ended:  # a process of an ended or unknown application: stop it
                machine.orders[proc.proc_id] = KillProcess(
                    proc_id=proc.proc_id, grace_s=self.limits.kill_grace_s, detail="its application has ended"
                )
            elif isinstance(order, KillProcess):
                del machine.orders[proc.proc_id]
            return
        grant = self.alloc.grant(proc.grant_id)
        if grant is None and not ended:
            if self.recovering:
                grant = self._adopt(
                    alloc_app,
                    Grant(
                        grant_id=proc.grant_id,
                        app=alloc_app,
                        unit=proc.unit,
                        machine=machine.name,
                        shape=Shape.of(proc.shape),
                        priority=runtime.record.priority,
                        group=runtime.record.group,
                    ),
                    now_ns,
                )
            if grant is None:
                machine.orders[proc.proc_id] = KillProcess(
                    proc_id=proc.proc_id, grace_s=self.limits.kill_grace_s, detail=f"grant {proc.grant_id} is not live"
                )
                return
        if proc.kind is ProcKind.MASTER:
            if not ended and runtime.am_proc and runtime.am_proc != proc.proc_id:
                # Another attempt is the current one (started while this one was not reported): stop this one.
                machine.orders[proc.proc_id] = KillProcess(
                    proc_id=proc.proc_id, grace_s=self.limits.kill_grace_s, detail="a newer attempt runs"
                )
            elif not ended:
                runtime.am_proc, runtime.am_machine, runtime.am_grant = proc.proc_id, machine.name, proc.grant_id
                if runtime.record.state is AppState.PENDING and proc.state != WAITING:
                    runtime.record.state = AppState.RUNNING
                    self._persist.append(Persist(runtime.record))
            elif known is None or known.state not in PROC_ENDED:
                self._master_ended(runtime, machine, proc)
        elif ended and (known is None or known.state not in PROC_ENDED):
            self._event(
                runtime,
                WorkerEnded(
                    app_id=proc.app_id,
                    proc_id=proc.proc_id,
                    machine=machine.name,
                    grant_id=proc.grant_id,
                    state=proc.state,
                    exit_code=proc.exit_code,
                    detail=proc.detail,
                ),
            )
        if ended and isinstance(order, KillProcess):
            del machine.orders[proc.proc_id]

    def _master_ended(self, runtime: AppRuntime, machine: MachineRuntime, proc: ProcReport) -> None:
        if proc.proc_id != runtime.am_proc and runtime.am_proc:
            return  # an older attempt
        record = runtime.record
        if proc.state == "finished" and proc.exit_code == 0:
            self._persist.extend(
                self._end(record.app_id, AppState.SUCCEEDED, self.now_s, exit_code=0, detail="its master exited 0")
            )
            return
        if proc.state == "killed" and record.app_id not in self.apps:
            return
        if record.attempts >= record.max_attempts:
            self._persist.extend(
                self._end(
                    record.app_id,
                    AppState.FAILED,
                    self.now_s,
                    exit_code=proc.exit_code,
                    detail=f"its master failed {_times(record.attempts)}; last: {proc.state} {proc.detail}".strip(),
                )
            )
            return
        # Again, on the same grant if it is still live; otherwise on a new one.
        grant = self.alloc.grant(runtime.am_grant)
        runtime.am_proc = ""
        if grant is not None and grant.machine in self.machines and self.machines[grant.machine].healthy:
            self._start_master(runtime, grant)
        else:
            if grant is not None:
                self.alloc.return_grant(grant.app, grant.grant_id)
            self._demand_master(runtime)

    # == time =========================================================================================================

    def end_recovery(self) -> None:
        """Recovery is over: ask for a master process for every live application nobody reported one of."""
        self.recovering = False
        self.pending_adopt.clear()
        for runtime in self.apps.values():
            if not runtime.am_proc:
                held = self.alloc.grants_of(runtime.record.app_id + AM_SUFFIX)
                if held:
                    self._start_master(runtime, held[0])
                else:
                    self._demand_master(runtime)

    def tick(self, now_ns: int, now_s: float) -> list[object]:
        """Run the allocator (not while recovering) and carry out its effects. Returns effects for the driver
        (Persist) — orders and events are queued here."""
        self.now_s = now_s
        out: list[object] = self.take_persist()
        if self.recovering:
            return out
        for effect in self.alloc.tick(now_ns):
            self._apply(effect, out)
        out.extend(self.take_persist())
        # Machines the allocator lost (their grants revoked above) are forgotten: they register again.
        lost = (
            [n for n in self.machines if n not in self.alloc.machines]
            if len(self.machines) != len(self.alloc.machines)
            else []
        )
        for name in lost:
            del self.machines[name]
            self.expected_machines.discard(name)
            self.full_reports.discard(name)
            out.append(MachineGone(name))
        return out

    def take_forgotten(self) -> list[str]:
        out, self.forgotten = self.forgotten, []
        return out

    def take_persist(self) -> list[object]:
        out: list[object] = list(self._persist)
        self._persist.clear()
        return out

    # == effects ======================================================================================================

    def _apply(self, effect: Effect, out: list[object]) -> None:
        if isinstance(effect, SendGrant):
            grant = effect.grant
            if grant.app.endswith(AM_SUFFIX):
                runtime = self.apps.get(grant.app[: -len(AM_SUFFIX)])
                if runtime is not None:
                    self._start_master(runtime, grant)
                return
            runtime = self.apps.get(grant.app)
            if runtime is not None:
                self._event(runtime, effect)
        elif isinstance(effect, Preempt):
            runtime = self.apps.get(effect.grant.app)
            if runtime is not None:
                self._event(runtime, effect)
        elif isinstance(effect, Revoke):
            grant = effect.grant
            machine = self.machines.get(grant.machine)
            if machine is not None:
                for proc in machine.procs.values():
                    if proc.grant_id == grant.grant_id and proc.state not in PROC_ENDED:
                        machine.orders[proc.proc_id] = KillProcess(
                            proc_id=proc.proc_id,
                            grace_s=self.limits.kill_grace_s,
                            detail=f"grant revoked ({effect.reason.value})",
                        )
            if grant.app.endswith(AM_SUFFIX):
                runtime = self.apps.get(grant.app[: -len(AM_SUFFIX)])
                if runtime is not None and runtime.am_grant == grant.grant_id:
                    runtime.am_proc = ""
                    runtime.am_grant = 0
                    if runtime.record.attempts < runtime.record.max_attempts:
                        self._demand_master(runtime)
                    else:
                        out.extend(
                            self._end(
                                runtime.record.app_id,
                                AppState.FAILED,
                                self.now_s,
                                detail=f"its master's grant was revoked ({effect.reason.value})",
                            )
                        )
                return
            runtime = self.apps.get(grant.app)
            if runtime is not None:
                self._event(runtime, effect)
        elif isinstance(effect, AskResync):
            runtime = self.apps.get(effect.app)
            if runtime is not None:
                self._event(runtime, effect)

    def _event(self, runtime: AppRuntime, event: AmEvent) -> None:
        runtime.events.append((runtime.next_event, event))
        runtime.next_event += 1
        self.woken.add(runtime.record.app_id)
        while len(runtime.events) > self.limits.max_events_per_app:
            runtime.events.popleft()

    def _demand_master(self, runtime: AppRuntime) -> None:
        record = runtime.record
        app = record.app_id + AM_SUFFIX
        spec = UnitSpec(Shape.of(record.master_shape))
        self.alloc.handle(DemandDelta(app, self.alloc.apps[app].expected_seq, AM_UNIT, 1, spec), 0)

    def _start_master(self, runtime: AppRuntime, grant: Grant) -> None:
        record = runtime.record
        machine = self.machines.get(grant.machine)
        if machine is None:
            return
        record.attempts += 1
        proc_id = f"{record.app_id}.master.{record.attempts}"
        runtime.am_proc, runtime.am_machine, runtime.am_grant = proc_id, grant.machine, grant.grant_id
        machine.orders[proc_id] = StartProcess(
            proc_id=proc_id,
            app_id=record.app_id,
            grant=grant,
            command=list(record.command),
            package=record.package_ref,
            env=dict(record.env),
            attempt=record.attempts,
        )
        self._persist.append(Persist(record))

    def _adopt(self, alloc_app: str, grant: Grant, now_ns: int) -> Grant | None:
        if grant.machine not in self.machines:
            self.pending_adopt.setdefault(grant.machine, []).append((alloc_app, grant))
            return None
        if alloc_app not in self.alloc.apps:
            return None
        try:
            return self.alloc.adopt_grant(alloc_app, grant.unit, grant.machine, grant.shape, grant.grant_id, now_ns)
        except FeitianError:
            return None  # does not fit (or is known): what runs on it is stopped by the caller

    # == reads ========================================================================================================

    def app_info(self, record: AppRecord) -> AppInfo:
        runtime = self.apps.get(record.app_id)
        grants = outstanding = 0
        if runtime is not None:
            for name in (record.app_id, record.app_id + AM_SUFFIX):
                app = self.alloc.apps.get(name)
                if app is not None:
                    grants += len(app.grants)
                    outstanding += sum(u.outstanding for u in app.units.values())
        return AppInfo(
            app_id=record.app_id,
            name=record.name,
            state=record.state,
            priority=record.priority,
            group=record.group,
            command=record.command,
            package=record.package,
            attempts=record.attempts,
            max_attempts=record.max_attempts,
            master_machine=runtime.am_machine if runtime else "",
            grants=grants,
            outstanding=outstanding,
            submitted_at=record.submitted_at,
            ended_at=record.ended_at,
            exit_code=record.exit_code,
            detail=record.detail,
        )

    def procs_of(self, app_id: str) -> list[ProcInfo]:
        """The application's processes as their Tubos last reported them (ended ones until a Tubo's next full
        report), by machine and id. A pass over every machine's processes: for one application at a time."""
        return [
            ProcInfo(
                proc_id=proc.proc_id,
                kind=proc.kind,
                machine=machine.name,
                address=machine.address,
                state=proc.state,
                exit_code=proc.exit_code,
                detail=proc.detail,
            )
            for machine in sorted(self.machines.values(), key=lambda m: m.name)
            for proc in sorted(machine.procs.values(), key=lambda p: p.proc_id)
            if proc.app_id == app_id
        ]

    def list_apps(self, include_ended: bool) -> list[AppInfo]:
        records = [r.record for r in self.apps.values()]
        if include_ended:
            records.extend(self.ended.values())
        records.sort(key=lambda r: r.app_id)
        return [self.app_info(r) for r in records]

    def nodes(self, now_ns: int) -> list[NodeInfo]:
        out = []
        for machine in sorted(self.machines.values(), key=lambda m: m.name):
            free = self.alloc.machine_free(machine.name).as_dict() if machine.name in self.alloc.machines else {}
            out.append(
                NodeInfo(
                    name=machine.name,
                    rack=machine.rack,
                    address=machine.address,
                    capacity=machine.capacity,
                    free=free,
                    healthy=machine.healthy,
                    health_reason=machine.health_reason,
                    isolation=machine.isolation,
                    processes=sum(1 for p in machine.procs.values() if p.state not in PROC_ENDED),
                    last_heartbeat_age_s=max(0.0, (now_ns - machine.last_heartbeat_ns) / _SECOND_NS),
                )
            )
        return out

    def quotas(self) -> list[QuotaInfo]:
        out = []
        for name in sorted(self.alloc.quota.groups):
            group = self.alloc.quota.groups[name]
            out.append(
                QuotaInfo(
                    group=name,
                    quota={self.alloc.space.machine_dims[i]: amount for i, amount in group.limits.items()},
                    usage=self.alloc.group_usage(name).as_dict(),
                    borrowable=self.alloc.borrowable(name).as_dict(),
                )
            )
        return out
