"""A client process of ``feitian bench sched``: simulated Tubos, or simulated application masters.

::

    python -m feitian.bench.sched_worker --cluster DIR --tubos --first I --count N [--interval-s 1.0]
    python -m feitian.bench.sched_worker --cluster DIR --masters APPS_FILE [--per-app K] [--hold-s H]

One asyncio loop and one Kuafu client per process; calls follow the FuxiMaster leader through the kit's
``Router`` (a killed leader's calls move to the new one).

**Tubos** (``--tubos``): machines ``m<I>``..``m<I+N-1>`` (racks of 50, 32 cores and 128 GiB each), each sending a
``fuxi.TuboHeartbeat`` every ``interval`` seconds (spread evenly over the interval): the first one ``full`` with
its processes, later ones with only what changed since the last answered one, a full one again whenever a reply
says ``send_full``. A ``StartProcess`` order in a reply is obeyed by reporting the process ``running`` in the next
heartbeat (nothing is started); a ``KillProcess`` by reporting it ``killed``.

**Application masters** (``--masters``, the application ids in a JSON file): each registers
(``fuxi.AmRegister`` with ``app_id`` set, as its Tubo would), long-polls its events (``fuxi.AmEvents``) and, once
told to go, keeps ``K`` units of one shape asked for: it asks ``+K`` (``fuxi.AmDemand``), and every grant it
receives it holds for about ``H`` seconds (0.5 H to 1.5 H), then returns it and asks for one more in the same
message. *Grant latency* is the time from sending a delta to receiving the grant that answers it (the grants of
a unit answer its asks in order). A resync request is answered with a snapshot; a new FuxiMaster epoch (a
failover) with a registration carrying the grants held, then a snapshot — what a real application master does.

Both print a status line every 0.5 s (JSON) and obey lines on stdin: ``mark`` (start a measured window: the
latencies so far are dropped), ``report`` (print ``{"report": {...}}`` with the window's figures),
``failover T`` (application masters: the leader was killed at monotonic time ``T``; report the first grant of a
newer epoch, and ask one more unit of the first application right now); stdin's end: exit.
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import contextlib
import random
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import msgspec

from feitian.bench.workers import stdin_lines
from feitian.errors import FeitianError
from feitian.replica import Router
from feitian.rpc import Client, ClientConfig
from feitian.runtime.eventloop import run
from feitian.sched import (
    AmDemand,
    AmEvents,
    AmRegister,
    KillProcess,
    ProcKind,
    ProcReport,
    StartProcess,
    TuboHeartbeat,
)
from feitian.sched.core import (
    AskResync,
    DemandDelta,
    DemandSnapshot,
    Grant,
    ReturnGrants,
    SendGrant,
    Shape,
    UnitDemand,
    UnitSpec,
)

__all__ = ["MACHINE_CAPACITY", "RACK_SIZE", "STATUS_EVERY_S", "UNIT", "UNIT_SHAPE", "percentiles"]

STATUS_EVERY_S = 0.5
RACK_SIZE = 50
MACHINE_CAPACITY = {"cpu": 32_000, "memory": 128 << 30}
UNIT = "w"
UNIT_SHAPE = Shape.of(cpu=1000, memory=1 << 30)
POLL_WAIT_S = 5.0
CALL_TIMEOUT_S = 60.0  # a call goes on trying (the Router's retries) through a failover


def percentiles(samples: list[float]) -> dict[str, float | int | None]:
    """Count, p50, p99 and max of ``samples`` (seconds), in milliseconds."""
    if not samples:
        return {"count": 0, "p50_ms": None, "p99_ms": None, "max_ms": None}
    ordered = sorted(samples)

    def at(q: float) -> float:
        return round(ordered[min(len(ordered) - 1, int(q * len(ordered)))] * 1000, 2)

    return {"count": len(ordered), "p50_ms": at(0.50), "p99_ms": at(0.99), "max_ms": round(ordered[-1] * 1000, 2)}


class _Common:
    def __init__(self, router: Router) -> None:
        self.router = router
        self.errors = 0
        self.error = ""
        self.latencies: list[float] = []

    def failed(self, exc: FeitianError) -> None:
        self.errors += 1
        self.error = f"{type(exc).__name__}: {exc.message}"


# -- simulated Tubos ------------------------------------------------------------------------------------------------


class _Machine:
    def __init__(self, i: int) -> None:
        self.name = f"m{i:05d}"
        self.rack = f"r{i // RACK_SIZE:03d}"
        self.procs: dict[str, ProcReport] = {}
        self.changed: dict[str, ProcReport] = {}
        self.full = True


class _Tubos(_Common):
    def __init__(self, router: Router, first: int, count: int, interval_s: float) -> None:
        super().__init__(router)
        self.machines = [_Machine(i) for i in range(first, first + count)]
        self.interval_s = interval_s
        self.sent = 0
        self.answered = 0
        self.full_sent = 0
        self.starts = 0
        self.epoch = 0  # the newest FuxiMaster epoch seen
        self.late = 0  # heartbeats sent later than their slot by more than an interval (the process fell behind)

    async def run(self) -> None:
        loop = asyncio.get_running_loop()
        start = loop.time()
        tasks = [
            loop.create_task(self._beat(m, start + self.interval_s * i / len(self.machines)))
            for i, m in enumerate(self.machines)
        ]
        await asyncio.gather(*tasks)

    async def _beat(self, machine: _Machine, first: float) -> None:
        loop = asyncio.get_running_loop()
        due = first
        while True:
            now = loop.time()
            if now < due:
                await asyncio.sleep(due - now)
            elif now > due + self.interval_s:
                self.late += 1
                due = now
            due += self.interval_s
            await self._one(machine)
            if machine.full:  # asked for a full report (a new leader recovering): as a real Tubo, send it at once
                await self._one(machine)

    async def _one(self, machine: _Machine) -> None:
        full = machine.full
        sending = dict(machine.procs if full else machine.changed)
        request = TuboHeartbeat(
            name=machine.name,
            rack=machine.rack,
            address="tcp://127.0.0.1:9",  # nobody calls a simulated Tubo
            capacity=MACHINE_CAPACITY,
            isolation="none",
            full=full,
            procs=list(sending.values()),
        )
        self.sent += 1
        self.full_sent += full
        started = time.monotonic()
        try:  # as a real Tubo: a heartbeat not answered within two intervals is sent again at the next one
            reply = await self.router.call(request, leader=True, timeout_s=max(1.0, 2 * self.interval_s))
        except FeitianError as exc:
            self.failed(exc)
            return
        if reply.epoch < self.epoch:  # a deposed master: its orders are ignored
            return
        self.epoch = reply.epoch
        self.latencies.append(time.monotonic() - started)
        self.answered += 1
        if full:
            machine.full = False
        for proc_id, proc in sending.items():  # acknowledged (unless it changed again meanwhile)
            if machine.changed.get(proc_id) is proc:
                del machine.changed[proc_id]
        machine.full = machine.full or reply.send_full
        for order in reply.orders:
            if isinstance(order, StartProcess):
                if order.proc_id in machine.procs:
                    continue
                self.starts += 1
                grant = order.grant
                report = ProcReport(
                    proc_id=order.proc_id,
                    app_id=order.app_id,
                    kind=ProcKind.MASTER,
                    grant_id=grant.grant_id,
                    unit=grant.unit,
                    shape=grant.shape.as_dict(),
                    state="running",
                    attempt=order.attempt,
                )
            elif isinstance(order, KillProcess):
                known = machine.procs.get(order.proc_id)
                if known is None or known.state != "running":
                    continue
                report = msgspec.structs.replace(known, state="killed", detail=order.detail)
            else:
                continue
            machine.procs[report.proc_id] = report
            machine.changed[report.proc_id] = report

    def status(self) -> dict[str, Any]:
        return {
            "machines": len(self.machines),
            "sent": self.sent,
            "answered": self.answered,
            "full_sent": self.full_sent,
            "starts": self.starts,
            "late": self.late,
            "errors": self.errors,
            "error": self.error,
        }

    def report(self) -> dict[str, Any]:
        return {"heartbeat_rtt": percentiles(self.latencies), **self.status()}


# -- simulated application masters ---------------------------------------------------------------------------------


class _App:
    def __init__(self, app_id: str) -> None:
        self.app_id = app_id
        self.epoch = 0
        self.seq = 1
        self.after = 0
        self.declared = False
        self.outstanding = 0
        self.asked: collections.deque[float] = collections.deque()  # send times of the asks not yet granted
        self.held: dict[int, Grant] = {}
        self.last_grant_seen = 0
        self.lock = asyncio.Lock()  # one AmDemand at a time: sequence numbers go out in order


class _Masters(_Common):
    def __init__(self, router: Router, app_ids: list[str], per_app: int, hold_s: float, seed: int) -> None:
        super().__init__(router)
        self.apps = [_App(a) for a in app_ids]
        self.per_app = per_app
        self.hold_s = hold_s
        self.rng = random.Random(seed)
        self.spec = UnitSpec(UNIT_SHAPE)
        self.registered = 0
        self.grants = 0
        self.returns = 0
        self.resyncs = 0
        self.registrations = 0
        self.failover_at = 0.0
        self.failover_epoch = 0
        self.first_grant_s: float | None = None
        self.reregistered = 0
        self._tasks: set[asyncio.Task[None]] = set()

    async def register_all(self, concurrency: int = 32) -> None:
        pending = iter(self.apps)

        async def lane() -> None:
            for app in pending:
                await self._register(app)
                self.registered += 1

        await asyncio.gather(*(lane() for _ in range(concurrency)))

    async def _register(self, app: _App) -> None:
        reply = await self.router.call(
            AmRegister(app_id=app.app_id, attempt=1, held=list(app.held.values())), leader=True
        )
        self.registrations += 1
        app.epoch = reply.epoch
        app.after = reply.next_event
        app.seq = reply.expected_seq
        for grant in reply.grants:
            app.held.setdefault(grant.grant_id, grant)
            app.last_grant_seen = max(app.last_grant_seen, grant.grant_id)
        if app.declared:
            await self._snapshot(app)

    async def _snapshot(self, app: _App) -> None:
        self.resyncs += 1
        units = (UnitDemand(UNIT, self.spec, app.outstanding),) if app.declared else ()
        snapshot = DemandSnapshot(app.app_id, app.seq, units, tuple(app.held), app.last_grant_seen)
        app.seq += 1
        await self.router.call(AmDemand(app_id=app.app_id, messages=[snapshot]), leader=True)

    async def _send(self, app: _App, returns: tuple[int, ...], more: int) -> None:
        async with app.lock:
            messages: list[DemandDelta | ReturnGrants | DemandSnapshot] = []
            if returns:
                messages.append(ReturnGrants(app.app_id, app.seq, returns))
                app.seq += 1
            if more:
                messages.append(DemandDelta(app.app_id, app.seq, UNIT, more, None if app.declared else self.spec))
                app.seq += 1
                app.declared = True
                app.outstanding += more
                now = time.monotonic()
                app.asked.extend([now] * more)
            reply = await self.router.call(AmDemand(app_id=app.app_id, messages=messages), leader=True)
            if reply.resync:
                await self._snapshot(app)

    async def drive(self) -> None:
        loop = asyncio.get_running_loop()
        for app in self.apps:
            self._spawn(self._poll(app))
        for app in self.apps:
            self._spawn(self._send(app, (), self.per_app))
        await loop.create_future()  # until the process is told to stop

    def _spawn(self, coro: Any) -> None:
        task = asyncio.get_running_loop().create_task(self._guard(coro))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _guard(self, coro: Any) -> None:
        try:
            await coro
        except FeitianError as exc:
            self.failed(exc)

    async def _poll(self, app: _App) -> None:
        while True:
            try:
                reply = await self.router.call(
                    AmEvents(app_id=app.app_id, after=app.after, epoch=app.epoch, wait_s=POLL_WAIT_S), leader=True
                )
            except FeitianError as exc:
                self.failed(exc)
                continue
            if reply.epoch != app.epoch:  # a new FuxiMaster: register again with what is held
                app.epoch = reply.epoch
                app.after = 0
                async with app.lock:
                    await self._register(app)
                if self.failover_at:
                    self.reregistered += 1
                continue
            app.after = reply.next
            now = time.monotonic()
            for event in reply.events:
                if isinstance(event, SendGrant):
                    self._granted(app, event.grant, now, reply.epoch)
                elif isinstance(event, AskResync):
                    async with app.lock:
                        await self._snapshot(app)

    def _granted(self, app: _App, grant: Grant, now: float, epoch: int) -> None:
        if grant.grant_id in app.held:
            return
        self.grants += 1
        app.held[grant.grant_id] = grant
        app.last_grant_seen = max(app.last_grant_seen, grant.grant_id)
        app.outstanding = max(0, app.outstanding - 1)
        if app.asked:
            self.latencies.append(now - app.asked.popleft())
        if self.failover_at and epoch > self.failover_epoch and self.first_grant_s is None:
            self.first_grant_s = now - self.failover_at
        self._spawn(self._hold_and_return(app, grant.grant_id))

    async def _hold_and_return(self, app: _App, grant_id: int) -> None:
        await asyncio.sleep(self.hold_s * (0.5 + self.rng.random()))  # the simulated work on the grant
        if app.held.pop(grant_id, None) is None:
            return
        self.returns += 1
        await self._send(app, (grant_id,), 1)

    def failover(self, killed_at: float) -> None:
        self.failover_epoch = max(a.epoch for a in self.apps)
        self.failover_at = killed_at
        self._spawn(self._send(self.apps[0], (), 1))  # a demand sent right after the kill

    def status(self) -> dict[str, Any]:
        return {
            "apps": len(self.apps),
            "registered": self.registered,
            "grants": self.grants,
            "returns": self.returns,
            "resyncs": self.resyncs,
            "registrations": self.registrations,
            "reregistered": self.reregistered,
            "held": sum(len(a.held) for a in self.apps),
            "first_grant_s": self.first_grant_s,
            "errors": self.errors,
            "error": self.error,
        }

    def report(self) -> dict[str, Any]:
        return {"grant_latency": percentiles(self.latencies), **self.status()}


# -- the process ----------------------------------------------------------------------------------------------------


def _say(line: dict[str, Any]) -> None:
    sys.stdout.write(msgspec.json.encode(line).decode() + "\n")
    sys.stdout.flush()


async def _main(args: argparse.Namespace) -> None:
    from feitian.deploy import LocalCluster

    cluster = LocalCluster(args.cluster)
    state = cluster.load()
    masters = [p.addresses[0] for p in state.processes if p.role == "fuxi-master"]
    rpc: Client = await cluster.client(ClientConfig(name=args.name, connect_timeout_s=2), state=state)
    # An attempt outlives a long poll (the master answers one a little before the attempt's deadline).
    router = Router(rpc, masters, service="FuxiMaster", timeout_s=CALL_TIMEOUT_S, attempt_timeout_s=POLL_WAIT_S + 2)
    lines = stdin_lines()
    worker: _Tubos | _Masters
    if args.tubos:
        worker = _Tubos(router, args.first, args.count, args.interval_s)
        main = asyncio.get_running_loop().create_task(worker.run())
    else:
        app_ids = msgspec.json.decode(Path(args.masters).read_bytes(), type=list[str])
        worker = _Masters(router, app_ids, args.per_app, args.hold_s, args.seed)
        await worker.register_all()
        main = asyncio.get_running_loop().create_task(worker.drive())
    _say({"ready": True, **worker.status()})
    reader = asyncio.get_running_loop().create_task(lines.get())
    try:
        while True:
            done, _ = await asyncio.wait([reader, main], timeout=STATUS_EVERY_S)
            if main in done:
                main.result()  # raises what ended it
                return
            if reader in done:
                command = reader.result().split()
                if not command:  # stdin's end: the benchmark is gone
                    return
                if command[0] == "mark":
                    worker.latencies.clear()
                elif command[0] == "report":
                    _say({"report": worker.report()})
                elif command[0] == "failover" and isinstance(worker, _Masters):
                    worker.failover(float(command[1]))
                reader = asyncio.get_running_loop().create_task(lines.get())
            _say({"status": worker.status()})
    finally:
        main.cancel()
        reader.cancel()
        with contextlib.suppress(BaseException):
            await main
        await rpc.close()


def main(argv: Sequence[str]) -> None:
    parser = argparse.ArgumentParser(prog="python -m feitian.bench.sched_worker")
    parser.add_argument("--cluster", required=True)
    parser.add_argument("--name", default="bench-sched-worker")
    parser.add_argument("--tubos", action="store_true")
    parser.add_argument("--first", type=int, default=0)
    parser.add_argument("--count", type=int, default=0)
    parser.add_argument("--interval-s", type=float, default=1.0)
    parser.add_argument("--masters", default="", help="a JSON file listing the application ids")
    parser.add_argument("--per-app", type=int, default=2)
    parser.add_argument("--hold-s", type=float, default=2.0)
    parser.add_argument("--seed", type=int, default=1)
    run(_main(parser.parse_args(argv)))


if __name__ == "__main__":
    main(sys.argv[1:])
