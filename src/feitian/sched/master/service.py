"""The FuxiMaster service: :class:`~feitian.sched.master.state.MasterState` behind Kuafu, led through Nuwa.

Every FuxiMaster campaigns in the Nuwa election ``fuxi-master`` (NUWA-6) with its address as the value. The
leader:

1. bumps the *epoch* (``<root>/epoch``, a fenced compare-and-set) — the fencing token every reply carries and
   the high bits of every grant id it hands out;
2. loads the hard state — applications (``<root>/apps/app-N``) and quota groups (``<root>/quota/<group>``) —
   from Nuwa;
3. recovers for ``recovery_s``: Tubos report their processes, application masters re-register with their
   grants, and the new master adopts all of it, killing nothing (FUXI-11);
4. serves: ticks the allocator, hands orders to Tubos in their heartbeat replies and events to application
   masters' long polls, and writes every change of an application's hard record to Nuwa *fenced* (a
   transaction that checks the leader's election node is still its own), so a deposed master cannot write.

When its Nuwa session is lost the leader stops at once (its state is dropped; a follower answers everything with
``NotLeaderError`` naming the leader it observes).

Why the hard state lives in Nuwa rather than in a Raft group of FuxiMasters: it is small (applications'
configurations and quota groups), written rarely (a submit, an application's end), and Nuwa already gives the
election, the fencing token and durable replicated storage (NUWA-9); a Raft group of masters would add three
more replicas and a second election for no gain. The soft state — machines, processes, demand and grants — is
never stored: it is rebuilt from Tubos and application masters (the seed's design).
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import re
import time
from collections.abc import Callable
from typing import Any

import msgspec

from feitian.base.clock import Clock, MonotonicClock
from feitian.coord import CheckOp, CoordClient, Created, CreateOp, DeleteOp, SetOp
from feitian.errors import (
    AlreadyExistsError,
    ConflictError,
    DeadlineExceededError,
    FeitianError,
    InvalidArgumentError,
    NotFoundError,
    NotLeaderError,
    SessionExpiredError,
)
from feitian.replica import remaining_s
from feitian.rpc import CallContext, Client, Server
from feitian.runtime.periodic import PeriodicTask
from feitian.sched.core import SchedLimits, SchedPolicy, check
from feitian.sched.master import identities
from feitian.sched.master.state import AppRecord, MachineGone, MachineSeen, MasterLimits, MasterState, Persist
from feitian.sched.messages import (
    RULES,
    AmDemand,
    AmDemandReply,
    AmEvents,
    AmEventsReply,
    AmRegister,
    AmRegistered,
    AppCredentials,
    AppIdentity,
    AppIdentityReply,
    AppInfo,
    CheckGrant,
    GetApp,
    GetAppIdentity,
    KillApp,
    ListApps,
    ListNodes,
    ListQuota,
    MasterStatus,
    MasterStatusReply,
    NodeInfo,
    QuotaInfo,
    SetQuota,
    SubmitApp,
    TuboHeartbeat,
    TuboHeartbeatReply,
)
from feitian.sched.pkg import DEFAULT_ROOT, PackageStore

__all__ = ["FuxiMaster", "FuxiMasterOptions"]

log = logging.getLogger(__name__)
_NS = 1_000_000_000
EVENTS_LANE = "fuxi.events"  # application masters' long polls (AmEvents), when the node configures it
GROUP_NAME = re.compile(r"[A-Za-z0-9._-]{1,64}")


class FuxiMasterOptions(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    coord: list[str]  # Nuwa replicas: election and hard state
    root: str = "/fuxi"  # where in Nuwa the hard state lives
    election: str = "fuxi-master"
    packages_root: str = DEFAULT_ROOT  # where package records live in Nuwa (feitian pkg)
    tick_ms: int = 50  # how often the allocator runs
    tubo_interval_s: float = 1.0  # the heartbeat interval Tubos are told to use
    # A new leader adopts what Tubos and application masters report, granting nothing new, until every machine
    # earlier leaders knew has reported — or this long at most (machines that do not report by then are lost).
    recovery_s: float = 10.0
    # The Nuwa session holding the leadership: a dead leader is replaced about this long after it died.
    session_ttl_ms: int = 3_000
    max_wait_s: float = 30.0  # the longest long poll of application masters' events
    quota: dict[str, dict[str, int]] = msgspec.field(default_factory=dict)  # groups created if missing
    policy: dict[str, Any] = msgspec.field(default_factory=dict)  # SchedPolicy fields to override
    limits: dict[str, Any] = msgspec.field(default_factory=dict)  # SchedLimits fields to override
    master_limits: dict[str, Any] = msgspec.field(default_factory=dict)  # MasterLimits fields to override
    # The authority that registers applications' principals; "" = the node's own [security] authority (none
    # in an insecure cluster: applications submitted with credentials are refused there).
    authority: str = ""

    def decoded(self) -> tuple[SchedPolicy, SchedLimits, MasterLimits]:
        try:
            return (
                msgspec.convert(self.policy, SchedPolicy).validate(),
                msgspec.convert(self.limits, SchedLimits).validate(),
                msgspec.convert(self.master_limits, MasterLimits),
            )
        except msgspec.ValidationError as exc:
            raise InvalidArgumentError(f"fuxi-master options: {exc}") from None


class _Leadership:
    """What the current leadership holds: its state, its election node (the fence) and its background tasks."""

    def __init__(self, state: MasterState, fence: CheckOp, recover_until_ns: int) -> None:
        self.state = state
        self.fence = fence
        self.recover_until_ns = recover_until_ns
        self.writes: asyncio.Queue[Persist | MachineSeen | MachineGone | str] = asyncio.Queue()
        self.started_ns = 0


class FuxiMaster:
    def __init__(
        self,
        rpc: Client,
        options: FuxiMasterOptions,
        *,
        name: str,
        clock: Clock | None = None,
        wall: Callable[[], float] = time.time,
        authority: str = "",
        ca_pem: bytes = b"",
    ) -> None:
        self.rpc = rpc
        self.authority = options.authority or authority  # applications' principals (identities.py)
        self.ca_pem = ca_pem
        self.options = options
        self.name = name
        self.clock = clock or MonotonicClock()
        self.wall = wall
        self.policy, self.limits, self.master_limits = options.decoded()
        self.root = options.root.rstrip("/")
        self.address = ""
        self.coord = CoordClient(rpc, options.coord, session_ttl_ms=options.session_ttl_ms, clock=self.clock)
        self.election = self.coord.election(options.election)
        self.leader_address = ""  # as observed in the election (a follower's hint)
        self.lead: _Leadership | None = None
        self.last_recovery_s = 0.0  # how long the latest leadership's recovery took
        self._tasks: list[asyncio.Task[None]] = []
        self._background: set[asyncio.Task[None]] = set()  # principals being retired
        self._waiting: dict[str, asyncio.Event] = {}
        self._submitting: dict[
            str, asyncio.Future[AppInfo]
        ] = {}  # submit_id -> its first attempt, while stored  # application -> set when it has new events

    # == lifecycle ====================================================================================================

    def register(self, server: Server) -> None:
        handlers: dict[type[Any], Callable[[CallContext, Any], Any]] = {
            SubmitApp: self._submit,
            GetApp: self._get_app,
            ListApps: self._list_apps,
            KillApp: self._kill,
            ListNodes: self._list_nodes,
            ListQuota: self._list_quota,
            SetQuota: self._set_quota,
            MasterStatus: self._status,
            TuboHeartbeat: self._heartbeat,
            CheckGrant: self._check_grant,
            GetAppIdentity: self._app_identity,
            AmRegister: self._am_register,
            AmDemand: self._am_demand,
            AmEvents: self._am_events,
        }
        lanes = server.config.lanes
        for request_type, fn in handlers.items():
            # Long polls wait in a lane of their own: a thousand of them must not take the default lane's slots
            # from heartbeats and submissions.
            lane = EVENTS_LANE if request_type is AmEvents and EVENTS_LANE in lanes else None
            server.add_handler(request_type, fn, requires=RULES[request_type], lane=lane)

    def start(self, address: Callable[[], str]) -> None:
        """Campaign (once the node listens: ``address()`` names where) and observe the election."""
        self._address_of = address
        loop = asyncio.get_running_loop()
        self._tasks = [loop.create_task(self._campaign()), loop.create_task(self._observe())]

    async def stop(self) -> None:
        tasks = [*self._tasks, *self._background]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        with contextlib.suppress(FeitianError, TimeoutError):
            async with asyncio.timeout(2.0):
                await self.coord.close()

    async def _observe(self) -> None:
        while True:
            try:
                async for leader in self.election.observe():
                    self.leader_address = leader.value.decode() if leader is not None else ""
            except FeitianError as exc:
                log.info("fuxi-master %s: observing the election failed (%s); again", self.name, exc)
            await self.clock.sleep(1.0)

    async def _campaign(self) -> None:
        while not self._address_of():  # the node starts serving after its roles have started
            await self.clock.sleep(0.02)
        self.address = self._address_of()
        while True:
            try:
                async with self.election.campaign(self.address.encode()) as lease:
                    log.info("fuxi-master %s: elected (token %d)", self.name, lease.token)
                    await self._serve_as_leader(CheckOp(path=lease.path, create_revision=lease.token))
            except (SessionExpiredError, ConflictError) as exc:
                log.warning("fuxi-master %s: leadership lost: %s", self.name, exc)
            except FeitianError as exc:
                log.warning("fuxi-master %s: campaign failed: %s; again", self.name, exc)
            finally:
                self.lead = None
                self._notify()
            await self.clock.sleep(0.5)

    async def _serve_as_leader(self, fence: CheckOp) -> None:
        epoch = await self._bump_epoch(fence)
        records = await self._load_apps()
        machines = await self._load_machines()
        quotas = await self._load_quota(fence)
        state = MasterState(epoch, limits=self.limits, policy=self.policy, master_limits=self.master_limits)
        for group, quota in quotas.items():
            state.alloc.set_quota(group, quota)
        state.load(records, machines)
        lead = _Leadership(state, fence, self.clock.monotonic_ns() + int(self.options.recovery_s * _NS))
        lead.started_ns = self.clock.monotonic_ns()
        ticker = PeriodicTask("fuxi-tick", lambda: self._tick(lead), self.options.tick_ms / 1000, clock=self.clock)
        writer = asyncio.get_running_loop().create_task(self._write_loop(lead))
        self.lead = lead
        log.info("fuxi-master %s: leading epoch %d with %d applications", self.name, epoch, len(state.apps))
        ticker.start()
        try:
            # Until the writer fails (a fence that failed: raised here) or the lock recipe cancels this task
            # because the Nuwa session, and with it the leadership, is lost.
            await writer
        finally:
            self.lead = None
            await ticker.stop()
            writer.cancel()
            await asyncio.gather(writer, return_exceptions=True)

    # == hard state in Nuwa ===========================================================================================

    async def _bump_epoch(self, fence: CheckOp) -> int:
        path = f"{self.root}/epoch"
        while True:
            try:
                current = await self.coord.get(path)
            except NotFoundError:
                try:
                    await self.coord.txn([fence, CreateOp(path=path, value=b"1", parents=True)])
                    return 1
                except AlreadyExistsError:
                    continue
            epoch = int(current.value or b"0") + 1
            try:
                await self.coord.txn(
                    [fence, SetOp(path=path, value=str(epoch).encode(), expected_version=current.stat.version)]
                )
                return epoch
            except ConflictError:
                await self.coord.stat(fence.path)  # NotFound: our leadership is gone (raised); else retry

    async def _load_apps(self) -> list[AppRecord]:
        directory = f"{self.root}/apps/"
        out: list[AppRecord] = []
        start_after = ""
        while True:
            try:
                page = await self.coord.list(directory, values=True, start_after=start_after)
            except NotFoundError:
                return out
            for child, value in zip(page.children, page.values, strict=True):
                try:
                    record = msgspec.msgpack.decode(value, type=AppRecord)
                except msgspec.DecodeError as exc:
                    log.error("fuxi-master: %s holds no application record (%s); skipped", child.path, exc)
                    continue
                record.app_id = child.path.rsplit("/", 1)[-1]
                out.append(record)
            if not page.more or not page.children:
                return out
            start_after = page.children[-1].path

    async def _load_machines(self) -> list[str]:
        names: list[str] = []
        start_after = ""
        while True:
            try:
                page = await self.coord.list(f"{self.root}/machines/", start_after=start_after)
            except NotFoundError:
                return names
            names.extend(child.path.rsplit("/", 1)[-1] for child in page.children)
            if not page.more or not page.children:
                return names
            start_after = page.children[-1].path

    async def _load_quota(self, fence: CheckOp) -> dict[str, dict[str, int]]:
        directory = f"{self.root}/quota/"
        found: dict[str, dict[str, int]] = {}
        with contextlib.suppress(NotFoundError):
            page = await self.coord.list(directory, values=True)
            for child, value in zip(page.children, page.values, strict=True):
                found[child.path.rsplit("/", 1)[-1]] = msgspec.json.decode(value, type=dict[str, int])
        for group, quota in self.options.quota.items():
            if group not in found:
                await self.coord.txn(
                    [fence, CreateOp(path=directory + group, value=msgspec.json.encode(quota), parents=True)]
                )
                found[group] = quota
        return found

    async def _write_loop(self, lead: _Leadership) -> None:
        """Write records in order, each fenced; a fence that fails ends the leadership."""
        while True:
            item = await lead.writes.get()
            if isinstance(item, str):  # an ended application's record to forget
                with contextlib.suppress(NotFoundError):
                    await self.coord.txn([lead.fence, DeleteOp(path=f"{self.root}/apps/{item}")])
                continue
            if isinstance(item, MachineSeen):
                with contextlib.suppress(AlreadyExistsError):
                    await self.coord.txn([lead.fence, CreateOp(path=f"{self.root}/machines/{item.name}", parents=True)])
                continue
            if isinstance(item, MachineGone):
                with contextlib.suppress(NotFoundError):
                    await self.coord.txn([lead.fence, DeleteOp(path=f"{self.root}/machines/{item.name}")])
                continue
            record = item.record
            if record.identity is not None and record.state.ended:
                # Its principal is retired and its key no longer kept (best effort: the capabilities expire).
                self._retire(record.identity)
                record.identity = None
            await self.coord.txn(
                [lead.fence, SetOp(path=f"{self.root}/apps/{record.app_id}", value=msgspec.msgpack.encode(record))]
            )

    def _retire(self, identity: AppIdentity) -> None:
        async def run() -> None:
            try:
                await identities.retire(self.rpc, self.authority, identity)
            except FeitianError as exc:
                log.warning("could not retire application principal %s: %s", identity.principal, exc)

        task = asyncio.get_running_loop().create_task(run())
        self._background.add(task)
        task.add_done_callback(self._background.discard)

    def _queue_effects(self, lead: _Leadership, effects: list[object]) -> None:
        for effect in effects:
            if isinstance(effect, Persist):
                lead.writes.put_nowait(Persist(msgspec.structs.replace(effect.record)))
            elif isinstance(effect, MachineSeen | MachineGone):
                lead.writes.put_nowait(effect)
        for app_id in lead.state.take_forgotten():
            lead.writes.put_nowait(app_id)

    # == the loop =====================================================================================================

    async def _tick(self, lead: _Leadership) -> None:
        state = lead.state
        now = self.clock.monotonic_ns()
        if state.recovering and (now >= lead.recover_until_ns or state.recovered()):
            state.end_recovery()
            self.last_recovery_s = (now - lead.started_ns) / _NS
            log.info(
                "fuxi-master %s: recovery over: %d machines, %d applications",
                self.name,
                len(state.machines),
                len(state.apps),
            )
        self._queue_effects(lead, state.tick(now, self.wall()))
        self._notify()

    def _notify(self) -> None:
        """Wake the long polls of the applications that have new events (all of them when leadership ends)."""
        lead = self.lead
        if lead is None:
            woken = list(self._waiting)
        else:
            woken = [a for a in lead.state.woken if a in self._waiting]
            lead.state.woken.clear()
        for app_id in woken:
            self._waiting.pop(app_id).set()

    def _leading(self) -> _Leadership:
        lead = self.lead
        if lead is None:
            hint = self.leader_address if self.leader_address != self.address else ""
            raise NotLeaderError(
                f"fuxi-master {self.name} is not the leader" + (f" (the leader is {hint})" if hint else ""),
                leader_hint=hint or None,
            )
        return lead

    # == users ========================================================================================================

    async def _submit(self, ctx: CallContext, req: SubmitApp) -> AppInfo:
        lead = self._leading()
        state = lead.state
        if req.submit_id and req.submit_id in state.by_submit:
            return state.app_info(state.record_of(state.by_submit[req.submit_id]))
        # Stored by a task of its own: a caller that gives up (its deadline) does not cut a submission between
        # Nuwa and the state; a retry while the first attempt is being stored waits for that attempt.
        task = self._submitting.get(req.submit_id) if req.submit_id else None
        if task is None:
            task = asyncio.get_running_loop().create_task(self._store_submission(lead, req))
            task.add_done_callback(_retrieve)
            if req.submit_id:
                self._submitting[req.submit_id] = task
                task.add_done_callback(functools.partial(self._submitted, req.submit_id))
        return await asyncio.shield(task)

    def _submitted(self, submit_id: str, task: asyncio.Task[AppInfo]) -> None:
        self._submitting.pop(submit_id, None)

    async def _store_submission(self, lead: _Leadership, req: SubmitApp) -> AppInfo:
        state = lead.state
        record = AppRecord(
            app_id="",
            name=req.name,
            command=list(req.command),
            package=req.package,
            env=dict(req.env),
            master_shape=dict(req.master_shape) or {"cpu": 500, "memory": 256 << 20},
            priority=req.priority,
            group=req.group,
            max_attempts=req.max_attempts,
            submit_id=req.submit_id,
            submitted_at=self.wall(),
        )
        state.check_submit(record)
        if req.credentials is not None:
            record.identity = await self._enrol(req.credentials)
        if req.package:  # fixed now: every attempt of its master runs the same content
            ref = await PackageStore(self.coord, None, root=self.options.packages_root).resolve(req.package)
            record.package, record.package_ref = ref.spec, ref
        result = await self.coord.txn(
            [
                lead.fence,
                CreateOp(
                    path=f"{self.root}/apps/app-", value=msgspec.msgpack.encode(record), sequential=True, parents=True
                ),
            ]
        )
        created = result.results[1]
        assert isinstance(created, Created)
        record.app_id = created.stat.path.rsplit("/", 1)[-1]
        if self.lead is not lead:
            raise NotLeaderError("fuxi-master lost its leadership while submitting", leader_hint=None)
        state.submit(record)
        return state.app_info(record)

    async def _enrol(self, creds: AppCredentials) -> AppIdentity:
        if not self.authority or not self.ca_pem:
            raise InvalidArgumentError(
                "submit: credentials were given, but this cluster is not secured (no authority)",
                hint="submit without credentials: in an insecure cluster every process reaches every service",
            )
        key, expires_ns = identities.check_credentials(creds, self.ca_pem, int(self.wall() * _NS))
        return await identities.enrol(self.rpc, self.authority, key, creds, expires_ns)

    async def _get_app(self, ctx: CallContext, req: GetApp) -> AppInfo:
        state = self._leading().state
        info = state.app_info(state.record_of(req.app_id))
        return msgspec.structs.replace(info, procs=state.procs_of(req.app_id))

    async def _list_apps(self, ctx: CallContext, req: ListApps) -> list[AppInfo]:
        return self._leading().state.list_apps(req.include_ended)

    async def _kill(self, ctx: CallContext, req: KillApp) -> AppInfo:
        lead = self._leading()
        self._queue_effects(lead, lead.state.kill(req.app_id, self.wall()))
        self._notify()
        return lead.state.app_info(lead.state.record_of(req.app_id))

    async def _list_nodes(self, ctx: CallContext, req: ListNodes) -> list[NodeInfo]:
        return self._leading().state.nodes(self.clock.monotonic_ns())

    async def _list_quota(self, ctx: CallContext, req: ListQuota) -> list[QuotaInfo]:
        return self._leading().state.quotas()

    async def _set_quota(self, ctx: CallContext, req: SetQuota) -> list[QuotaInfo]:
        lead = self._leading()
        if not GROUP_NAME.fullmatch(req.group):  # it names a Nuwa node too
            raise InvalidArgumentError(
                f"quota group name {req.group!r}: use 1-64 of A-Z a-z 0-9 . _ -", hint="e.g. `batch` or `team-a`"
            )
        # Checked in full (resources, amounts) on a copy before anything is stored.
        probe = MasterState(0, limits=self.limits, policy=self.policy)
        probe.alloc.set_quota(req.group, req.quota)
        path = f"{self.root}/quota/{req.group}"
        value = msgspec.json.encode(req.quota)
        try:
            await self.coord.txn([lead.fence, CreateOp(path=path, value=value, parents=True)])
        except AlreadyExistsError:
            await self.coord.txn([lead.fence, SetOp(path=path, value=value)])
        lead.state.alloc.set_quota(req.group, req.quota)
        return lead.state.quotas()

    async def _status(self, ctx: CallContext, req: MasterStatus) -> MasterStatusReply:
        lead = self.lead if req.local else self._leading()
        state = lead.state if lead is not None else None
        return MasterStatusReply(
            name=self.name,
            leader=lead is not None,
            leader_address=self.address if lead is not None else self.leader_address,
            epoch=state.epoch if state else 0,
            recovering=state.recovering if state else False,
            machines=len(state.machines) if state else 0,
            apps=len(state.apps) if state else 0,
            grants=len(state.alloc.held) if state else 0,
            problems=check(state.alloc) if state and req.check else None,
        )

    # == Tubos ========================================================================================================

    async def _heartbeat(self, ctx: CallContext, req: TuboHeartbeat) -> TuboHeartbeatReply:
        lead = self._leading()
        reply = lead.state.heartbeat(req, self.clock.monotonic_ns(), self.options.tubo_interval_s)
        self._queue_effects(lead, lead.state.take_persist())
        self._notify()
        return reply

    async def _check_grant(self, ctx: CallContext, req: CheckGrant) -> Any:
        return self._leading().state.check_grant(req.grant_id, req.app_id, req.machine)

    async def _app_identity(self, ctx: CallContext, req: GetAppIdentity) -> AppIdentityReply:
        record = self._leading().state.record_of(req.app_id)
        return AppIdentityReply(None if record.state.ended else record.identity)

    # == application masters ==========================================================================================

    async def _am_register(self, ctx: CallContext, req: AmRegister) -> AmRegistered:
        lead = self._leading()
        state = lead.state
        expected = state.am_register(req.app_id, list(req.held), self.clock.monotonic_ns())
        return AmRegistered(
            epoch=state.epoch,
            app=state.app_info(state.record_of(req.app_id)),
            expected_seq=expected,
            grants=state.alloc.grants_of(req.app_id),
            next_event=state.last_event(req.app_id),
        )

    async def _am_demand(self, ctx: CallContext, req: AmDemand) -> AmDemandReply:
        lead = self._leading()
        return AmDemandReply(lead.state.am_demand(req.app_id, list(req.messages), self.clock.monotonic_ns()))

    async def _am_events(self, ctx: CallContext, req: AmEvents) -> AmEventsReply:
        # Answer (empty) a little before the caller gives up.
        wait_s = remaining_s(ctx, min(max(0.0, req.wait_s), self.options.max_wait_s), margin=0.2)
        deadline = self.clock.monotonic_ns() + int(wait_s * _NS)
        while True:
            lead = self._leading()
            events, last, machines = lead.state.events_after(req.app_id, req.after, req.epoch)
            left_ns = deadline - self.clock.monotonic_ns()
            if events or left_ns <= 0 or req.epoch != lead.state.epoch:  # a new epoch: re-register at once
                return AmEventsReply(epoch=lead.state.epoch, events=events, next=last, machines=machines)
            changed = self._waiting.setdefault(req.app_id, asyncio.Event())
            with contextlib.suppress(TimeoutError, DeadlineExceededError):
                async with asyncio.timeout(left_ns / _NS):
                    await changed.wait()


def _retrieve(task: asyncio.Task[Any]) -> None:
    """Mark a submission task's failure as seen (its callers may all have given up)."""
    if not task.cancelled():
        task.exception()
