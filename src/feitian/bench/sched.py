"""``feitian bench sched``: Fuxi at 5,000 machines — the allocator core, the FuxiMaster service over real RPC,
and a FuxiMaster failover (issue 18, "Benchmark").

* **Core** (one process each, spawned fresh so its memory is its own): :func:`feitian.sched.bench.bench_core`
  — grant decisions per CPU second and CPU per decision at 5,000 machines × 10,000 applications, filled then
  churned — and :func:`feitian.sched.bench.bench_memory` — peak RSS and decisions/s at 100,000 machines.
* **Service**: a local cluster of one Nuwa replica and two FuxiMasters (real processes, no real Tubo); client
  processes (``sched_worker.py``) pose as 5,000 Tubos heartbeating every second over Kuafu (full first report,
  ``StartProcess`` orders obeyed by reporting the process running), then 1,000 applications are submitted, their
  masters run (reported by the simulated Tubos), and one more client process plays their application masters
  against FuxiMaster directly (``fuxi.AmRegister``/``AmDemand``/``AmEvents`` with ``app_id`` set): each keeps
  two units asked for, holds each grant about 2 s, returns it and asks again. Measured over a window of
  ``seconds``: grant latency (delta sent → ``SendGrant`` received in the long poll) p50/p99, grants/s, the
  leader's CPU (CPU seconds / wall seconds, from ``/proc/<pid>/stat``), RSS, its event-loop stalls, and the
  heartbeat round trip seen by the Tubos.
* **Failover**: with that soft state (5,000 machines, 1,000 applications holding grants), SIGKILL of the
  leader; the split of the time to the first grant by the new leader: election (the standby leads: the dead
  leader's Nuwa session expired and the standby won), recovery (every machine sent its full report, or
  ``recovery_s``), first grant (of a newer epoch, received by an application master; a demand is sent right
  after the kill and every master re-registers as it finds the new epoch).

The cluster runs without security, as the other benchmarks. FuxiMaster's settings (named in the output):
Nuwa session TTL 3 s (the default; it bounds the election after a SIGKILL), heartbeat timeout 10 s, recovery at
most 10 s, and the application masters' long polls in the lane ``fuxi.events`` (as ``cluster up`` configures it),
so the 1,000 of them do not hold the default lane's slots.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import json
import multiprocessing
import os
import signal
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import msgspec

from feitian.bench.workers import spawn_worker
from feitian.errors import FeitianError, InvalidArgumentError, UnavailableError
from feitian.rpc import Client, Health, HealthReply
from feitian.runtime.eventloop import run
from feitian.runtime.procs import ProcessRef, rss_bytes, signal_process
from feitian.sched import AppState, MasterStatus, MasterStatusReply, SchedClient, bench_core, bench_memory
from feitian.testing.sched import SchedCluster

__all__ = ["SchedBenchOptions", "print_report", "run_sched_bench"]

Say = Callable[[str], None]

TARGETS = {
    "core_decisions_per_s": 20_000,  # at least, one core, 5,000 machines x 10,000 applications
    "memory_100k_bytes": 2 << 30,  # at most
    "grant_latency_p99_ms": 1000.0,  # at most, 5,000 Tubos
    "failover_first_grant_s": 5.0,  # at most
}
# Published figures of the peers, not measured here.
PEERS = [
    ("Fuxi 2.0 (ATC 2021)", "40,000 task scheduling decisions/s per (C++) scheduler; 100,000-machine clusters"),
    ("Fuxi (VLDB 2014)", "5,000 machines, failover without killing running work; incremental protocol"),
    (
        "Borg (EuroSys 2015)",
        "Borgmaster failover typically about 10 s (up to a minute in big cells); cells of ~10,000 machines",
    ),
    ("YARN (SoCC 2013)", "built past Hadoop 1's JobTracker limit of about 4,000 machines; runs all of Yahoo!'s grids"),
]
MASTER_OPTIONS = {
    "tubo_interval_s": 1.0,
    "recovery_s": 10.0,
    "session_ttl_ms": 3000,
    "tick_ms": 50,
    "policy": {"heartbeat_timeout_ns": 10_000_000_000},
}
POLL_S = 0.05
SUBMIT_CONCURRENCY = 16
CLK_TCK = os.sysconf("SC_CLK_TCK")


class SchedBenchOptions(msgspec.Struct, frozen=True, kw_only=True):
    tubos: int = 5_000
    apps: int = 1_000
    procs: int = 4  # client processes of simulated Tubos
    seconds: float = 20.0  # the measured window of the service part
    per_app: int = 2  # units each application master keeps asked for
    hold_s: float = 2.0  # how long it holds a grant (0.5x .. 1.5x)
    core_machines: int = 5_000
    core_apps: int = 10_000
    core_rounds: int = 200
    memory_machines: int = 100_000
    core: bool = True
    service: bool = True
    directory: str | None = None

    @classmethod
    def quick(cls, **overrides: Any) -> SchedBenchOptions:
        """A smoke test at tiny scale (seconds, not minutes)."""
        small = {
            "tubos": 20,
            "apps": 10,
            "procs": 1,
            "seconds": 3.0,
            "hold_s": 0.5,
            "core_machines": 200,
            "core_apps": 400,
            "core_rounds": 10,
            "memory_machines": 2_000,
        }
        return cls(**{**small, **overrides})

    def validate(self) -> SchedBenchOptions:
        problems = []
        if self.tubos < self.procs:
            problems.append(f"--tubos ({self.tubos}) must be at least --procs ({self.procs})")
        if self.apps < 1:
            problems.append(f"--apps must be at least 1, got {self.apps}")
        if self.apps * 2 > self.tubos * 32 * 10:  # each master takes 0.1 core (below): room for all of them
            problems.append(f"--apps ({self.apps}) cannot all run on {self.tubos} simulated machines")
        if problems:
            raise InvalidArgumentError("bench sched: " + "; ".join(problems))
        return self


# -- the core ------------------------------------------------------------------------------------------------------


def _in_fresh_process(fn: Callable[..., dict[str, Any]], *args: Any) -> dict[str, Any]:
    context = multiprocessing.get_context("spawn")
    with concurrent.futures.ProcessPoolExecutor(max_workers=1, mp_context=context) as pool:
        return pool.submit(fn, *args).result()


def run_core(opts: SchedBenchOptions, say: Say) -> dict[str, Any]:
    say(f"core: {opts.core_machines} machines x {opts.core_apps} applications, {opts.core_rounds} rounds of churn")
    core = _in_fresh_process(bench_core, opts.core_machines, opts.core_apps, opts.core_rounds)
    say(f"core: {opts.memory_machines} machines, memory")
    memory = _in_fresh_process(bench_memory, opts.memory_machines, opts.core_apps)
    return {"core": core, "memory": memory}


# -- the client processes ------------------------------------------------------------------------------------------


class _Worker:
    def __init__(self, proc: asyncio.subprocess.Process, log: str) -> None:
        self.proc = proc
        self.log = log
        self.status: dict[str, Any] = {}
        self.ready = False
        self.reports: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
        self.reader = asyncio.get_running_loop().create_task(self._read())

    async def _read(self) -> None:
        assert self.proc.stdout is not None
        async for line in self.proc.stdout:
            try:
                data = json.loads(line)
            except ValueError:
                continue
            if data.get("ready"):
                self.ready = True
                self.status = data
            elif "status" in data:
                self.status = data["status"]
            elif "report" in data:
                self.reports.put_nowait(data["report"])

    def send(self, line: str) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.write(line.encode() + b"\n")

    async def report(self, timeout_s: float = 30.0) -> dict[str, Any]:
        self.send("report")
        async with asyncio.timeout(timeout_s):
            return await self.reports.get()

    def check(self) -> None:
        if self.proc.returncode is not None:
            raise UnavailableError(
                f"bench sched: client process {self.proc.pid} exited ({self.proc.returncode}): {_tail(self.log)}",
                hint=f"its log: {self.log}",
            )

    async def kill(self) -> None:
        if self.proc.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                self.proc.kill()
        await self.proc.wait()
        self.reader.cancel()
        await asyncio.gather(self.reader, return_exceptions=True)


async def _spawn(cluster_dir: str, log: str, argv: list[str]) -> _Worker:
    proc = await spawn_worker("feitian.bench.sched_worker", ["--cluster", cluster_dir, *argv], log)
    return _Worker(proc, log)


def _tail(path: str, lines: int = 3) -> str:
    with contextlib.suppress(OSError), open(path, errors="replace") as f:
        return " | ".join(line.rstrip() for line in f.readlines()[-lines:])
    return ""


async def _until(
    check: Callable[[], Any], timeout_s: float, what: str, workers: list[_Worker], poll_s: float = 0.25
) -> Any:
    """Poll ``check`` (sync or async) until it returns something true; UnavailableError after ``timeout_s``."""
    deadline = time.monotonic() + timeout_s
    while True:
        for worker in workers:
            worker.check()
        result = check()
        if asyncio.iscoroutine(result):
            result = await result
        if result:
            return result
        if time.monotonic() > deadline:
            raise UnavailableError(f"bench sched: not within {timeout_s:g} s: {what}")
        await asyncio.sleep(poll_s)  # polling pace


# -- the FuxiMasters -----------------------------------------------------------------------------------------------


def _cpu_s(pid: int) -> float:
    """User + system CPU seconds of a process so far (``/proc/<pid>/stat``; 0 once it is gone)."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / CLK_TCK


def _machine_busy_s() -> float:
    """CPU seconds every process of this machine spent so far, all cores (``/proc/stat``: not idle, not iowait)."""
    with open("/proc/stat") as f:
        fields = [int(x) for x in f.readline().split()[1:]]
    return (sum(fields[:8]) - fields[3] - fields[4]) / CLK_TCK


class _CpuMeter:
    """CPU seconds of some processes, and of the whole machine, over a window."""

    def __init__(self, pids: dict[str, list[int]]) -> None:
        self.pids = pids
        self.before = self._read()

    def _read(self) -> dict[str, float]:
        out = {name: sum(_cpu_s(pid) for pid in pids) for name, pids in self.pids.items()}
        out["machine"] = _machine_busy_s()
        out["wall"] = time.monotonic()
        return out

    def cores(self) -> dict[str, float]:
        """Cores used by each group (CPU seconds / wall seconds) since the meter was made."""
        after = self._read()
        wall = after.pop("wall") - self.before["wall"]
        return {name: (value - self.before[name]) / wall for name, value in after.items()}


async def _local_status(rpc: Client, address: str, timeout_s: float = 2.0) -> MasterStatusReply | None:
    try:
        return await rpc.call(address, MasterStatus(local=True), timeout=timeout_s)
    except FeitianError:
        return None


async def _leader(cluster: SchedCluster, rpc: Client) -> str:
    """The FuxiMaster that leads now (a loaded one may take seconds to answer)."""
    for _ in range(10):
        for spec in cluster.specs:
            if spec.role == "fuxi-master":
                status = await _local_status(rpc, spec.listen[0], timeout_s=10.0)
                if status is not None and status.leader:
                    return spec.name
    raise UnavailableError("bench sched: no FuxiMaster leads")


async def _health(rpc: Client, address: str) -> dict[str, float]:
    try:
        reply: HealthReply = await rpc.call(address, Health(), timeout=5)
    except FeitianError:
        return {}
    return {
        "loop_stalls": float(reply.detail.get("loop_stalls", "0")),
        "loop_lag_max_ms": float(reply.detail.get("loop_lag_max_ms", "0")),
    }


# -- the service and the failover ----------------------------------------------------------------------------------


async def _service(cluster: SchedCluster, opts: SchedBenchOptions, logs: str, say: Say) -> dict[str, Any]:
    rpc = await cluster.rpc_client("bench-sched")
    sched = SchedClient(rpc, cluster.master_addresses, timeout_s=60.0)
    workers: list[_Worker] = []
    cluster_dir = cluster.cluster.dir
    out: dict[str, Any] = {}
    try:
        say(f"service: {opts.tubos} simulated Tubos in {opts.procs} processes")
        started = time.monotonic()
        share, extra = divmod(opts.tubos, opts.procs)
        first = 0
        for p in range(opts.procs):
            count = share + (1 if p < extra else 0)
            argv = ["--tubos", "--name", f"bench-tubos-{p}", "--first", str(first), "--count", str(count)]
            workers.append(await _spawn(cluster_dir, f"{logs}/tubos-{p}.log", argv))
            first += count

        async def all_machines() -> bool:
            with contextlib.suppress(FeitianError):
                status = await sched.status()
                return status.machines >= opts.tubos and not status.recovering
            return False

        await _until(all_machines, 120 + opts.tubos / 50, f"FuxiMaster knows {opts.tubos} machines", workers)
        out["machines_registered_s"] = time.monotonic() - started

        say(f"service: submitting {opts.apps} applications")
        started = time.monotonic()
        app_ids = await _submit(sched, opts.apps)
        out["submit_per_s"] = opts.apps / (time.monotonic() - started)

        async def all_running() -> bool:
            apps = await sched.apps(include_ended=False)
            return sum(a.state is AppState.RUNNING for a in apps) >= opts.apps

        await _until(all_running, 120 + opts.apps / 10, f"{opts.apps} application masters running", workers)
        out["apps_running_s"] = time.monotonic() - started

        say(f"service: {opts.apps} application masters asking for {opts.per_app} units each, churning")
        ids_file = f"{logs}/apps.json"
        Path(ids_file).write_bytes(msgspec.json.encode(app_ids))
        argv = ["--masters", ids_file, "--name", "bench-masters", "--per-app", str(opts.per_app)]
        masters = await _spawn(cluster_dir, f"{logs}/masters.log", [*argv, "--hold-s", str(opts.hold_s)])
        workers.append(masters)
        await _until(lambda: masters.ready, 120 + opts.apps / 20, "application masters registered", workers)
        wanted = opts.apps * opts.per_app
        await _until(lambda: masters.status.get("grants", 0) >= wanted, 60, "the first grants", workers)

        leader_name = await _leader(cluster, rpc)
        leader = cluster.ref(leader_name)
        address = _address(cluster, leader_name)
        for worker in workers:
            worker.send("mark")
        health_before = await _health(rpc, address)
        meter = _CpuMeter(
            {
                "master": [leader.pid],
                "nuwa": [cluster.ref(n).pid for n in cluster.names("coord")],
                "simulated_tubos": [w.proc.pid for w in workers if w is not masters],
                "simulated_masters": [masters.proc.pid],
            }
        )
        wall_before = time.monotonic()
        grants_before = masters.status.get("grants", 0)
        say(f"service: measuring for {opts.seconds:g} s")
        await asyncio.sleep(opts.seconds)  # the measured window
        cores = meter.cores()
        wall_after = time.monotonic()
        grants_after = masters.status.get("grants", 0)
        health_after = await _health(rpc, address)
        tubo_reports = [await w.report() for w in workers if w is not masters]
        am = await masters.report()
        window = wall_after - wall_before
        out.update(
            {
                "window_s": window,
                "grant_latency": am["grant_latency"],
                "grants_per_s": (grants_after - grants_before) / window,
                "master_cpu": cores.pop("master"),
                "cores_used": cores,  # the others: Nuwa, the simulation, and the machine as a whole
                "master_rss_bytes": rss_bytes(leader),
                "master_loop_stalls": health_after.get("loop_stalls", 0) - health_before.get("loop_stalls", 0),
                "master_loop_lag_max_ms": health_after.get("loop_lag_max_ms"),
                "heartbeats_per_s": sum(r["heartbeat_rtt"]["count"] for r in tubo_reports) / window,
                "heartbeat_rtt": _merge([r["heartbeat_rtt"] for r in tubo_reports]),
                "heartbeats_late": sum(r["late"] for r in tubo_reports),
                "tubo_errors": sum(r["errors"] for r in tubo_reports),
                "am_errors": am["errors"],
                "am_resyncs": am["resyncs"],
                "grants_held": am["held"],
            }
        )
        errors = [r["error"] for r in [*tubo_reports, am] if r["error"]]
        if errors:
            out["last_error"] = errors[-1]
        out["failover"] = await _failover(cluster, rpc, leader_name, leader, masters, workers, opts, say)
    finally:
        for worker in workers:
            await worker.kill()
        await rpc.close()
    return out


def _merge(parts: list[dict[str, Any]]) -> dict[str, Any]:
    """The heartbeat round trips of several processes: the worst p50/p99 of them (each over its own share)."""
    counted = [p for p in parts if p["count"]]
    if not counted:
        return {"count": 0, "p50_ms": None, "p99_ms": None, "max_ms": None}
    return {
        "count": sum(p["count"] for p in counted),
        "p50_ms": max(p["p50_ms"] for p in counted),
        "p99_ms": max(p["p99_ms"] for p in counted),
        "max_ms": max(p["max_ms"] for p in counted),
    }


def _address(cluster: SchedCluster, name: str) -> str:
    return next(s.listen[0] for s in cluster.specs if s.name == name)


async def _submit(sched: SchedClient, count: int) -> list[str]:
    ids: list[str] = [""] * count
    pending = iter(range(count))

    async def lane() -> None:
        for i in pending:
            info = await sched.submit(
                f"bench-{i}", ["sleep", "infinity"], master_shape={"cpu": 100, "memory": 64 << 20}, priority=100
            )
            ids[i] = info.app_id

    await asyncio.gather(*(lane() for _ in range(SUBMIT_CONCURRENCY)))
    return ids


async def _failover(
    cluster: SchedCluster,
    rpc: Client,
    leader_name: str,
    leader: ProcessRef,
    masters: _Worker,
    workers: list[_Worker],
    opts: SchedBenchOptions,
    say: Say,
) -> dict[str, Any]:
    standby = next(s for s in cluster.specs if s.role == "fuxi-master" and s.name != leader_name)
    address = standby.listen[0]
    held = masters.status.get("held", 0)
    say(f"failover: SIGKILL of {leader_name} (pid {leader.pid}) with {held} grants held")
    killed = time.monotonic()
    signal_process(leader, signal.SIGKILL)
    masters.send(f"failover {killed!r}")
    elected = recovered = None
    status: MasterStatusReply | None = None
    deadline = killed + 120
    while recovered is None and time.monotonic() < deadline:
        status = await _local_status(rpc, address)
        now = time.monotonic()
        if status is not None and status.leader:
            elected = elected or now
            if not status.recovering:
                recovered = now
                break
        for worker in workers:
            worker.check()
        await asyncio.sleep(POLL_S)  # polling pace
    if elected is None or recovered is None:
        raise UnavailableError(f"bench sched: {standby.name} did not lead and recover within 120 s of the SIGKILL")
    first = await _until(lambda: masters.status.get("first_grant_s"), 60, "a grant by the new leader", workers, 0.05)
    await _until(lambda: masters.status.get("reregistered", 0) >= opts.apps, 60, "every master re-registered", [])
    after = await _local_status(rpc, address)
    return {
        "grants_held_at_kill": held,
        "election_s": elected - killed,
        "recovery_s": recovered - elected,
        "first_grant_s": first,
        "machines_after": after.machines if after else None,
        "apps_after": after.apps if after else None,
        "grants_after": after.grants if after else None,
        "reregistered": masters.status.get("reregistered", 0),
    }


# -- the whole ------------------------------------------------------------------------------------------------------


def run_service(opts: SchedBenchOptions, say: Say) -> dict[str, Any]:
    with tempfile.TemporaryDirectory(prefix="feitian-bench-sched-", dir=opts.directory) as tmp:
        logs = f"{tmp}/logs"
        os.makedirs(logs)
        cluster = SchedCluster(f"{tmp}/cluster", machines=0, masters=2, coord=1, master_options=MASTER_OPTIONS)
        try:
            say("service: starting 1 Nuwa replica and 2 FuxiMasters")
            cluster.start(timeout_s=60)
            return run(_service(cluster, opts, logs, say))
        finally:
            stuck = cluster.stop()
            if stuck:
                say(f"processes that would not stop: {[r.pid for r in stuck]}")


def run_sched_bench(opts: SchedBenchOptions, progress: Say | None = None) -> dict[str, Any]:
    opts.validate()
    say = progress or (lambda _: None)
    out: dict[str, Any] = {"options": msgspec.to_builtins(opts), "cpus": os.cpu_count()}
    if opts.core:
        out.update(run_core(opts, say))
    if opts.service:
        out["service"] = run_service(opts, say)
    out["targets"] = TARGETS
    out["met"] = _met(out)
    out["peers_published"] = [{"system": s, "published": f} for s, f in PEERS]
    rounded: dict[str, Any] = _rounded(out)
    return rounded


def _met(out: dict[str, Any]) -> dict[str, bool | None]:
    core, memory, service = out.get("core"), out.get("memory"), out.get("service")
    p99 = service["grant_latency"]["p99_ms"] if service else None
    first = service["failover"]["first_grant_s"] if service else None
    return {
        "core_decisions_per_s": core["steady_decisions_per_s"] >= TARGETS["core_decisions_per_s"] if core else None,
        "memory_100k_bytes": memory["peak_rss_bytes"] <= TARGETS["memory_100k_bytes"] if memory else None,
        "grant_latency_p99_ms": p99 is not None and p99 <= TARGETS["grant_latency_p99_ms"] if service else None,
        "failover_first_grant_s": first is not None and first <= TARGETS["failover_first_grant_s"] if service else None,
    }


def _rounded(value: Any) -> Any:
    if isinstance(value, float):
        return round(value, 3)
    if isinstance(value, dict):
        return {k: _rounded(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_rounded(v) for v in value]
    return value


def print_report(f: dict[str, Any]) -> None:
    met = f["met"]

    def mark(name: str) -> str:
        return {True: "met", False: "NOT met", None: "-"}[met[name]]

    o = f["options"]
    print(f"Fuxi at {o['tubos']:,} machines  ({f['cpus']} CPUs on this machine)")
    if "core" in f:
        c, m = f["core"], f["memory"]
        print(f"core, {c['machines']:,} machines x {o['core_apps']:,} applications (one process):")
        print(f"  fill: {c['fill_decisions']:,} grants at {c['fill_decisions_per_s']:,} decisions/s")
        print(f"  steady state: {c['steady_decisions']:,} decisions at {c['steady_decisions_per_s']:,} decisions/s, "
              f"{c['steady_cpu_us_per_decision']} us CPU each  "
              f"[target >= {TARGETS['core_decisions_per_s']:,}: {mark('core_decisions_per_s')}]")  # fmt: skip
        print(f"core, {m['machines']:,} machines, filled ({m['grants_held_after_fill']:,} grants): "
              f"peak RSS {m['peak_rss_bytes'] / (1 << 20):,.0f} MiB  [target < 2 GiB: {mark('memory_100k_bytes')}]; "
              f"{m['steady_decisions_per_s']:,} decisions/s steady")  # fmt: skip
    if "service" in f:
        s = f["service"]
        lat, hb = s["grant_latency"], s["heartbeat_rtt"]
        print(f"service, 1 FuxiMaster (+1 standby, 1 Nuwa replica), {o['tubos']:,} simulated Tubos (heartbeat 1 s, "
              f"{o['procs']} processes), {o['apps']:,} applications:")  # fmt: skip
        print(f"  {o['tubos']:,} machines registered in {s['machines_registered_s']:.1f} s; "
              f"{o['apps']:,} applications submitted at {s['submit_per_s']:.0f}/s, masters running after "
              f"{s['apps_running_s']:.1f} s")  # fmt: skip
        print(f"  grant latency (delta sent -> grant received), {lat['count']:,} grants in {s['window_s']:.0f} s "
              f"({s['grants_per_s']:.0f}/s): p50 {lat['p50_ms']} ms, p99 {lat['p99_ms']} ms, max {lat['max_ms']} ms"
              f"  [target p99 < 1 s: {mark('grant_latency_p99_ms')}]")  # fmt: skip
        rss_mib = s["master_rss_bytes"] / (1 << 20)
        print(f"  FuxiMaster leader: {s['master_cpu'] * 100:.0f}% of a core, RSS {rss_mib:.0f} MiB, "
              f"{s['master_loop_stalls']:.0f} event-loop stalls >= 100 ms in the window (longest since start "
              f"{s['master_loop_lag_max_ms']} ms)")  # fmt: skip
        c = s["cores_used"]
        print(f"  cores used in the window: Nuwa {c['nuwa']:.2f}, simulated Tubos {c['simulated_tubos']:.2f}, "
              f"simulated masters {c['simulated_masters']:.2f}; the whole machine {c['machine']:.2f} of "
              f"{f['cpus']}")  # fmt: skip
        print(f"  heartbeats: {s['heartbeats_per_s']:.0f}/s answered, round trip p50 {hb['p50_ms']} ms, p99 "
              f"{hb['p99_ms']} ms; {s['heartbeats_late']} sent late; errors: Tubos {s['tubo_errors']}, "
              f"masters {s['am_errors']}")  # fmt: skip
        if s.get("last_error"):
            print(f"  last error: {s['last_error']}")
        fo = s["failover"]
        print(f"failover (SIGKILL of the leader, {fo['grants_held_at_kill']:,} grants held): election "
              f"{fo['election_s']:.2f} s + recovery {fo['recovery_s']:.2f} s; first grant by the new leader "
              f"{fo['first_grant_s']:.2f} s after the kill  [target < 5 s: {mark('failover_first_grant_s')}]; "
              f"after: {fo['machines_after']} machines, {fo['apps_after']} applications, "
              f"{fo['reregistered']} masters re-registered")  # fmt: skip
    print("published figures of peers (not measured here):")
    for peer in f["peers_published"]:
        print(f"  {peer['system']}: {peer['published']}")
