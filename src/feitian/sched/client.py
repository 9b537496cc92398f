"""Clients of Fuxi: :class:`SchedClient` for users (submit, list, kill, machines, quota) and :class:`AppMaster`
for the code of an application master — each async, with a synchronous wrapper for scripts.

A user::

    sched = SchedClient(rpc, fuxi_master_addresses)            # rpc: a feitian.rpc.Client
    app = await sched.submit("wordcount", ["python", "-m", "my.master"], priority=10, group="default")
    app = await sched.wait(app.app_id)                        # until it ends; app.state, app.exit_code
    await sched.kill(app.app_id)

An application master (a process FuxiMaster started; it talks only to its machine's Tubo)::

    async with AppMaster.from_env() as am:                    # registers with FuxiMaster
        await am.ask("map", 100, Shape.of(cpu=1000, memory=512 << 20), Locality(machines=("m1",)))
        async for event in am.events():                       # SendGrant, Preempt, Revoke, WorkerEnded, ...
            if isinstance(event, SendGrant):
                await am.start_worker(event.grant, f"map-{n}", ["python", "-m", "my.worker"])
        await am.give_back([grant_id, ...])

:class:`AppMaster` keeps the incremental protocol's books (FUXI-3): the sequence numbers, what each unit still
waits for, the grants it holds; it answers a resync request with a snapshot by itself, and after a FuxiMaster
failover it registers again with the grants it holds (so nothing is lost and nothing killed).
"""

from __future__ import annotations

import os
import uuid
from collections.abc import AsyncIterator, Sequence
from types import TracebackType
from typing import Any, Self

import msgspec

from feitian.errors import ConflictError, DeadlineExceededError, FeitianError, InvalidArgumentError, NotFoundError
from feitian.replica import Router
from feitian.rpc import Client, ClientConfig
from feitian.runtime.loop_thread import LoopThread
from feitian.sched.core import (
    AskResync,
    DemandDelta,
    DemandSnapshot,
    Grant,
    Locality,
    ReturnGrants,
    Revoke,
    SendGrant,
    Shape,
    UnitDemand,
    UnitSpec,
)
from feitian.sched.credentials import DEFAULT_TTL_S, AppGrant, credentials_for
from feitian.sched.messages import (
    AmDemand,
    AmEvent,
    AmEvents,
    AmRegister,
    AppEnded,
    AppInfo,
    AppState,
    GetApp,
    KillApp,
    ListApps,
    ListNodes,
    ListQuota,
    ListWorkers,
    LocalWhoAmI,
    LogChunk,
    MasterStatus,
    MasterStatusReply,
    NodeInfo,
    ProcInfo,
    ProcKind,
    QuotaInfo,
    ReadLog,
    SetQuota,
    StartWorker,
    StopWorker,
    SubmitApp,
    WhoAmIReply,
    WorkerInfo,
)

__all__ = ["AppMaster", "SchedClient", "SyncAppMaster", "SyncSchedClient"]

ENDED = frozenset({AppState.SUCCEEDED, AppState.FAILED, AppState.KILLED})
LOG_READ_BYTES = 1 << 20  # one read of a log (the Tubo's bound on a reply)
TAIL_STEP_BYTES = 64 << 10  # `tail`: how far back each read goes
MAX_TAIL_BYTES = 16 << 20  # `tail`: the most read back to find the lines asked for


class SchedClient:
    """What a user asks of FuxiMaster; calls follow the leader (the kit's Router)."""

    def __init__(self, rpc: Client, masters: Sequence[str], *, timeout_s: float = 30.0) -> None:
        self.rpc = rpc
        self.router = Router(rpc, list(masters), service="FuxiMaster", timeout_s=timeout_s)

    async def submit(
        self,
        name: str,
        command: Sequence[str],
        *,
        package: str = "",
        env: dict[str, str] | None = None,
        master_shape: dict[str, int] | None = None,
        priority: int = 100,
        group: str = "default",
        max_attempts: int = 3,
        grants: Sequence[AppGrant] = (),
        credential_ttl_s: float = DEFAULT_TTL_S,
    ) -> AppInfo:
        """Submit an application. ``grants`` ((resource, rights) pairs, :func:`~feitian.sched.credentials.
        parse_grant`) give its processes an identity of their own holding those of this client's capabilities,
        narrowed (secured clusters; docs/sched.md, "Security")."""
        credentials = credentials_for(self.rpc, grants, ttl_s=credential_ttl_s) if grants else None
        request = SubmitApp(
            name=name,
            command=list(command),
            package=package,
            env=dict(env or {}),
            master_shape=dict(master_shape or {}),
            priority=priority,
            group=group,
            max_attempts=max_attempts,
            submit_id=uuid.uuid4().hex,  # a retried submit returns the first application
            credentials=credentials,
        )
        return await self.router.call(request, leader=True)

    async def get(self, app_id: str) -> AppInfo:
        return await self.router.call(GetApp(app_id), leader=True)

    async def apps(self, *, include_ended: bool = True) -> list[AppInfo]:
        return await self.router.call(ListApps(include_ended), leader=True)

    async def kill(self, app_id: str) -> AppInfo:
        return await self.router.call(KillApp(app_id), leader=True)

    async def nodes(self) -> list[NodeInfo]:
        return await self.router.call(ListNodes(), leader=True)

    async def quota(self) -> list[QuotaInfo]:
        return await self.router.call(ListQuota(), leader=True)

    async def set_quota(self, group: str, quota: dict[str, int]) -> list[QuotaInfo]:
        return await self.router.call(SetQuota(group, quota), leader=True)

    async def status(self, *, check: bool = False) -> MasterStatusReply:
        """The leader's status; ``check``: with the allocator's broken invariants (``problems``, [] if none)."""
        return await self.router.call(MasterStatus(check=check), leader=True)

    async def procs(self, app_id: str) -> list[ProcInfo]:
        """The application's processes: machine, state (waiting, running, or how it ended), exit code, detail."""
        return (await self.get(app_id)).procs

    async def find_proc(self, app_id: str, proc_id: str = "") -> ProcInfo:
        """One process of the application (``proc_id`` empty: its application master, the latest attempt).
        NotFoundError naming what is missing: the application, or the process (with the ones known)."""
        procs = await self.procs(app_id)
        if not proc_id:
            masters = [p for p in procs if p.kind is ProcKind.MASTER]
            if not masters:
                raise NotFoundError(
                    f"application {app_id} has no master process FuxiMaster knows of",
                    hint="it has not been started yet, or its Tubo no longer reports it",
                    app=app_id,
                )
            return max(masters, key=lambda p: _attempt(p.proc_id))
        for proc in procs:
            if proc.proc_id == proc_id:
                return proc
        known = ", ".join(p.proc_id for p in procs[:10]) or "none"
        raise NotFoundError(
            f"application {app_id} has no process {proc_id!r} that FuxiMaster knows of",
            hint=f"its processes: {known}",
            app=app_id,
            proc_id=proc_id,
        )

    async def read_log(
        self,
        app_id: str,
        proc_id: str = "",
        *,
        stderr: bool = False,
        offset: int | None = None,
        length: int = LOG_READ_BYTES,
        proc: ProcInfo | None = None,
    ) -> LogChunk:
        """Part of a process's stdout (``stderr``: its stderr), read from the Tubo of its machine: ``length``
        bytes (at most 1 MiB) from ``offset``, or the last ``length`` when ``offset`` is None. ``proc_id``
        empty: the application master. ``proc`` (from :meth:`find_proc`) saves asking FuxiMaster again."""
        where = proc or await self.find_proc(app_id, proc_id)
        request = ReadLog(
            app_id=app_id,
            proc_id=where.proc_id,
            stream="stderr" if stderr else "stdout",
            offset=offset,
            length=length,
        )
        return await self.router.rpc.call(where.address, request, timeout=10.0)

    async def tail(self, app_id: str, proc_id: str = "", *, lines: int = 10, stderr: bool = False) -> LogChunk:
        """The last ``lines`` lines of a process's output (reading back at most 16 MiB to find them)."""
        if lines < 0:
            raise InvalidArgumentError(f"tail: {lines} lines", hint="0 or more")
        proc = await self.find_proc(app_id, proc_id)
        chunk = await self.read_log(app_id, stderr=stderr, length=TAIL_STEP_BYTES, proc=proc)
        data, start = chunk.data, chunk.offset
        while data.count(b"\n") <= lines and start > chunk.first and len(data) < MAX_TAIL_BYTES:
            step = min(TAIL_STEP_BYTES, start - chunk.first)
            more = await self.read_log(app_id, stderr=stderr, offset=start - step, length=step, proc=proc)
            if more.offset + len(more.data) != start:  # dropped meanwhile (rotated): what is here will do
                break
            data, start = more.data + data, more.offset
        kept = b"".join(data.splitlines(keepends=True)[-lines:]) if lines else b""
        return msgspec.structs.replace(chunk, data=kept, offset=start + len(data) - len(kept))

    async def wait(self, app_id: str, *, poll_s: float = 0.2, timeout_s: float | None = None) -> AppInfo:
        """Until the application has ended (succeeded, failed or killed); DeadlineExceededError after
        ``timeout_s``."""
        clock = self.router.clock
        deadline = None if timeout_s is None else clock.monotonic_ns() + int(timeout_s * 1e9)
        while True:
            info = await self.get(app_id)
            if info.state in ENDED:
                return info
            if deadline is not None and clock.monotonic_ns() >= deadline:
                raise DeadlineExceededError(f"application {app_id} still {info.state.value} after {timeout_s}s")
            await clock.sleep(poll_s)


def _attempt(proc_id: str) -> int:
    """A master process's attempt (``<app>.master.<n>``)."""
    tail = proc_id.rsplit(".", 1)[-1]
    return int(tail) if tail.isdigit() else 0


class AppMaster:
    """An application master's side of Fuxi (see the module docstring). Talks to its own Tubo only."""

    def __init__(self, rpc: Client, tubo: str) -> None:
        self.rpc = rpc
        self.tubo = tubo
        self.me: WhoAmIReply | None = None
        self.app_id = ""
        self.epoch = 0
        self.seq = 1
        self.after = 0
        self.units: dict[str, tuple[UnitSpec, int]] = {}  # unit -> (spec, outstanding)
        self.held: dict[int, Grant] = {}
        self.last_grant_seen = 0
        self.machines: dict[str, str] = {}  # machine -> its Tubo's address
        self.ended: AppState | None = None
        self._own_rpc = False

    @classmethod
    def from_env(cls, rpc: Client | None = None) -> AppMaster:
        """The master of the application this process belongs to (``FEITIAN_TUBO_SOCKET``, set by Tubo)."""
        tubo = os.environ.get("FEITIAN_TUBO_SOCKET", "")
        if not tubo:
            raise InvalidArgumentError(
                "FEITIAN_TUBO_SOCKET is not set: this process was not started by a Tubo",
                hint="submit the program with `feitian sched submit`",
            )
        am = cls(rpc or Client(ClientConfig(name="fuxi-am")), tubo)
        am._own_rpc = rpc is None
        return am

    async def __aenter__(self) -> Self:
        await self.register()
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.close()

    async def close(self) -> None:
        if self._own_rpc:
            await self.rpc.close()

    async def whoami(self) -> WhoAmIReply:
        self.me = await self.rpc.call(self.tubo, LocalWhoAmI(), timeout=10.0)
        self.app_id = self.me.app_id
        return self.me

    async def register(self) -> None:
        """Register (again, after a FuxiMaster failover) with the grants held, then set the demand."""
        if self.me is None:
            await self.whoami()
        reply = await self.rpc.call(self.tubo, AmRegister(held=list(self.held.values())), timeout=15.0)
        self.after = reply.next_event  # what came before is in reply.grants
        self.epoch = reply.epoch
        self.seq = reply.expected_seq
        for grant in reply.grants:  # a restarted master takes back what its application holds
            self.held.setdefault(grant.grant_id, grant)
            self.last_grant_seen = max(self.last_grant_seen, grant.grant_id)
        await self._snapshot()

    async def _send(self, message: DemandDelta | ReturnGrants) -> None:
        """Send one sequenced message. A refused one (bad input) uses no seq number; one whose outcome is
        unknown (the connection broke) does, and a gap it leaves is mended by the resync it causes."""
        try:
            reply = await self.rpc.call(self.tubo, AmDemand(messages=[message]), timeout=15.0)
        except (InvalidArgumentError, NotFoundError, ConflictError):
            raise
        except FeitianError:
            self.seq += 1
            raise
        self.seq += 1
        if reply.resync:
            await self._snapshot()

    async def _snapshot(self) -> None:
        units = tuple(UnitDemand(name, spec, outstanding) for name, (spec, outstanding) in self.units.items())
        snapshot = DemandSnapshot(self.app_id, self.seq, units, tuple(self.held), self.last_grant_seen)
        self.seq += 1
        await self.rpc.call(self.tubo, AmDemand(messages=[snapshot]), timeout=15.0)

    async def ask(self, unit: str, count: int, shape: Shape, locality: Locality | None = None) -> None:
        """Ask for ``count`` more of ``unit`` (declared by its first ask: shape and locality)."""
        spec = UnitSpec(shape, locality or Locality())
        known = self.units.get(unit)
        if known is not None and known[0] != spec:
            raise InvalidArgumentError(f"unit {unit!r} was declared with another shape or locality")
        message = DemandDelta(self.app_id, self.seq, unit, count, spec if known is None else None)
        await self._send(message)  # refused (bad input): nothing changes here, and no seq is used
        self.units[unit] = (spec, (known[1] if known else 0) + count)

    async def cancel(self, unit: str, count: int) -> None:
        """Ask for ``count`` fewer of ``unit`` (of what is not granted yet)."""
        spec, outstanding = self.units[unit]
        count = min(count, outstanding)
        await self._send(DemandDelta(self.app_id, self.seq, unit, -count))
        self.units[unit] = (spec, outstanding - count)

    async def give_back(self, grant_ids: Sequence[int]) -> None:
        """Return grants (their workers should have ended: what still runs on them is killed)."""
        ids = tuple(g for g in grant_ids if g in self.held)
        if ids:
            await self._send(ReturnGrants(self.app_id, self.seq, ids))
            for grant_id in ids:
                del self.held[grant_id]

    async def poll(self, wait_s: float = 10.0) -> list[AmEvent]:
        """The next events (waiting up to ``wait_s``), with the books updated; a resync is answered here."""
        reply = await self.rpc.call(
            self.tubo, AmEvents(after=self.after, epoch=self.epoch, wait_s=wait_s), timeout=wait_s + 15.0
        )
        if reply.epoch != self.epoch:  # a new FuxiMaster: register again with what is held
            self.epoch = reply.epoch
            self.after = 0
            await self.register()
            return []
        self.after = reply.next
        self.machines.update(reply.machines)
        for event in reply.events:
            if isinstance(event, SendGrant):
                grant = event.grant
                self.held[grant.grant_id] = grant
                self.last_grant_seen = max(self.last_grant_seen, grant.grant_id)
                if grant.unit in self.units:
                    spec, outstanding = self.units[grant.unit]
                    self.units[grant.unit] = (spec, max(0, outstanding - 1))
            elif isinstance(event, Revoke):
                self.held.pop(event.grant.grant_id, None)
            elif isinstance(event, AskResync):
                await self._snapshot()
            elif isinstance(event, AppEnded):
                self.ended = event.state
        return list(reply.events)

    async def events(self, wait_s: float = 10.0) -> AsyncIterator[AmEvent]:
        """Every event, as it comes, until the application ends."""
        while self.ended is None:
            for event in await self.poll(wait_s):
                yield event

    def address_of(self, machine: str) -> str:
        return self.machines.get(machine, "")

    async def start_worker(
        self,
        grant: Grant | int,
        name: str,
        command: Sequence[str],
        *,
        env: dict[str, str] | None = None,
        package: str = "",
    ) -> WorkerInfo:
        """Start a worker on a grant this application holds (its machine's Tubo checks the grant), in
        ``package`` (NAME[@VERSION]) if given."""
        if isinstance(grant, int):
            found = self.held.get(grant)
            if found is None:
                raise NotFoundError(f"grant {grant} is not held by this application", grant_id=grant)
            grant = found
        request = StartWorker(
            grant=grant,
            name=name,
            command=list(command),
            env=dict(env or {}),
            package=package,
            address=self.address_of(grant.machine),
        )
        return await self.rpc.call(self.tubo, request, timeout=30.0)

    async def stop_worker(self, machine: str, name: str, *, grace_s: float = 10.0) -> WorkerInfo:
        request = StopWorker(machine=machine, name=name, grace_s=grace_s, address=self.address_of(machine))
        return await self.rpc.call(self.tubo, request, timeout=30.0)

    async def workers(self, machine: str = "") -> list[WorkerInfo]:
        request = ListWorkers(machine=machine, address=self.address_of(machine) if machine else "")
        return await self.rpc.call(self.tubo, request, timeout=30.0)


class SyncSchedClient:
    """:class:`SchedClient` for scripts (its own event loop in a thread)."""

    def __init__(self, masters: Sequence[str], config: ClientConfig | None = None, **client: Any) -> None:
        self._thread = LoopThread("SyncSchedClient")
        config = config or ClientConfig(name="fuxi-sync", connect_timeout_s=0.5)

        async def make() -> tuple[Client, SchedClient]:
            rpc = Client(config, **client)
            return rpc, SchedClient(rpc, masters)

        self._rpc, self.client = self._thread.run(make())

    def __getattr__(self, name: str) -> Any:
        method = getattr(self.client, name)

        def call(*args: Any, **kwargs: Any) -> Any:
            return self._thread.run(method(*args, **kwargs))

        return call

    def close(self) -> None:
        self._thread.run(self._rpc.close())
        self._thread.stop()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class SyncAppMaster:
    """:class:`AppMaster` for scripts: ``with SyncAppMaster.from_env() as am: am.ask(...); am.poll()``."""

    def __init__(self, am_factory: Any = None) -> None:
        self._thread = LoopThread("SyncAppMaster")

        async def make() -> AppMaster:
            am = AppMaster.from_env() if am_factory is None else am_factory()
            await am.register()
            return am

        self.am: AppMaster = self._thread.run(make())

    @classmethod
    def from_env(cls) -> SyncAppMaster:
        return cls()

    def __getattr__(self, name: str) -> Any:
        method = getattr(self.am, name)
        if not callable(method):
            return method

        def call(*args: Any, **kwargs: Any) -> Any:
            result = method(*args, **kwargs)
            return self._thread.run(result) if hasattr(result, "__await__") else result

        return call

    def close(self) -> None:
        self._thread.run(self.am.close())
        self._thread.stop()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
