"""``feitian bench coord-scale``: Nuwa at the seeds' scale (issue 15) — a million locks over 1,000 sessions.

Three coord replicas (secured like ``feitian cluster up`` unless ``secure=False``), sessions with the default
TTL (8 s). ``procs`` client processes (``coord_scale_worker.py``) make ``sessions`` sessions between them and
take ``locks`` locks with the ``Lock`` recipe, one directory per lock, spread evenly over the sessions,
``concurrency`` acquisitions in flight per process. Then, with every lock held:

* the acquisition rate: locks/s over the whole run and over its last tenth (progress on stderr as it goes);
* per replica: resident memory (VmRSS, at the end and the highest seen), the longest event-loop stall since it
  started (``kuafu.Health`` detail, ``runtime/looplag.py``), nodes, sessions, and the last snapshot's index,
  size and time (``snapshot_bytes``/``snapshot_seconds`` of the replica's stats where it reports them; else the
  size of its newest snapshot file and no time);
* follower catch-up: a follower gets SIGKILL, writes go on until the leader's log is compacted past it, it is
  started again; seconds from its start until a linearizable read on it returns the last write, and whether it
  installed a snapshot;
* lock failover at full size: a holder in its own process takes a lock, a waiter here queues behind it, the
  holder gets SIGKILL; seconds until the waiter holds the lock;
* sessions lost during the whole run: sessions whose client saw them expire (the workers count them), and the
  drop of the replicated session count between the end of acquisition and the end of the run;
* a burst on a fresh cluster: ``burst_sessions`` new sessions and as many lock acquisitions at once, from
  ``procs`` processes; seconds until every lock is held, and sessions lost within a TTL after that.

Each replica's stalls are also reported for the time the replica itself was running on a CPU (``own``): a stall
while the machine's cores were busy with the other processes is the machine's, not the replica's (on a 2-core
machine running the three replicas and the client processes at full speed, the cores are always busy).

The targets are the seeds', for 1,000,000 locks: every lock held with no session lost; longest loop stall
< 200 ms; ≤ 1.5 GiB RSS per replica; follower catch-up < 30 s; lock failover < 10 s; and no session lost in
the burst. With fewer locks the same checks are made and marked as below the target's scale.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import msgspec

from feitian.bench.coord_scale_worker import POLL_S, WorkerProcesses, lock_path, shares
from feitian.coord import CoordStatus, GetRequest, StatusRequest
from feitian.coord.core import DEFAULT_SESSION_TTL_MS
from feitian.errors import FeitianError, InvalidArgumentError, UnavailableError
from feitian.rpc import Client, Health, HealthReply
from feitian.runtime.eventloop import run
from feitian.runtime.looplag import LoopLag
from feitian.runtime.procs import rss_bytes

__all__ = ["ScaleOptions", "print_report", "run_burst", "run_coord_scale_bench"]

TARGET_LOCKS = 1_000_000
MAX_STALL_MS = 200.0
MAX_RSS_BYTES = 3 << 29  # 1.5 GiB
MAX_CATCHUP_S = 30.0
MAX_FAILOVER_S = 10.0
CATCHUP_WRITERS = 64  # clients writing, one write in flight each, until the log is compacted past the follower
PROGRESS_EVERY_S = 2.0
NO_PROGRESS_S = 120.0  # acquisition is given up when no lock was taken for this long
CATCHUP_TIMEOUT_S = 600.0

Say = Callable[[str], None]


class ScaleOptions(msgspec.Struct, frozen=True, kw_only=True):
    locks: int = TARGET_LOCKS
    sessions: int = 1000
    procs: int = 2
    concurrency: int = 256  # acquisitions in flight per process
    secure: bool = True
    session_ttl_ms: int = DEFAULT_SESSION_TTL_MS
    snapshot_every_entries: int = 20_000
    keep_entries_after_snapshot: int = 5_000
    burst_sessions: int = 1000  # 0: no burst
    directory: str | None = None
    keep: bool = False  # leave the clusters' directories (logs, data) behind

    def validate(self) -> ScaleOptions:
        problems = []
        if self.locks < 1:
            problems.append(f"--locks must be at least 1, got {self.locks}")
        if self.sessions < self.procs:
            problems.append(f"--sessions ({self.sessions}) must be at least --procs ({self.procs})")
        if self.burst_sessions and self.burst_sessions < self.procs:
            problems.append(f"--burst ({self.burst_sessions}) must be 0 or at least --procs ({self.procs})")
        if problems:
            raise InvalidArgumentError(
                "coord-scale: " + "; ".join(problems), hint="every client process needs a session of its own"
            )
        return self


# -- the replicas ---------------------------------------------------------------------------------------------------


async def _leader(cluster: Any, rpc: Client, timeout_s: float = 30.0) -> int:
    deadline = time.monotonic() + timeout_s
    while (leader := await cluster.leader(rpc)) is None:
        if time.monotonic() > deadline:
            raise UnavailableError(f"coord-scale: no coord leader within {timeout_s:g} s")
        await asyncio.sleep(POLL_S)  # polling pace
    return int(leader)


async def _status(rpc: Client, address: str) -> CoordStatus | None:
    try:
        return await rpc.call(address, StatusRequest(), timeout=10)
    except FeitianError:
        return None


def _newest_snapshot_file(data_dir: str) -> int | None:
    snap = Path(data_dir) / "raft" / "snap"
    with contextlib.suppress(OSError):
        files = sorted(snap.glob("snap-*.snap"))
        if files:
            return files[-1].stat().st_size
    return None


async def _replica_figures(cluster: Any, rpc: Client, rss_peak: dict[int, int]) -> dict[str, dict[str, Any]]:
    out: dict[str, dict[str, Any]] = {}
    for i, address in cluster.addresses.items():
        figures: dict[str, Any] = {"rss_bytes": rss_bytes(cluster.ref(i)), "rss_peak_bytes": rss_peak.get(i)}
        try:
            health: HealthReply = await rpc.call(address, Health(), timeout=10)
            lag = health.detail.get("loop_lag_max_ms")
            figures["loop_lag_max_ms"] = None if lag is None else float(lag)
            figures["loop_stalls"] = int(health.detail.get("loop_stalls", "0"))
            busy = health.detail.get("loop_lag_max_busy_ms")
            figures["loop_lag_max_busy_ms"] = None if busy is None else float(busy)
            for key in ("gc_pause_max_ms", "gc_full_max_ms"):  # the garbage collector's share of the stalls
                value = health.detail.get(key)
                figures[key] = None if value is None else float(value)
            figures["gc_full_collections"] = int(health.detail.get("gc_full_collections", "0"))
            recent = LoopLag.parse_recent(health.detail.get("loop_stalls_recent", ""))
            figures["loop_stalls_longest"] = sorted((round(ms) for _, ms in recent), reverse=True)[:5]
            figures["uptime_s"] = health.uptime_s
        except FeitianError as exc:
            figures["error"] = exc.message
        status = await _status(rpc, address)
        if status is not None:
            stats = status.replica
            snapshot_bytes = getattr(stats, "snapshot_bytes", None)
            figures.update(
                role=stats.role,
                term=stats.term,
                applied_index=stats.applied_index,
                nodes=status.nodes,
                sessions=status.sessions,
                snapshot_index=stats.snapshot_index,
                snapshots_installed=stats.snapshots_installed,
                snapshot_bytes=snapshot_bytes or _newest_snapshot_file(cluster.data_dir(i)),
                snapshot_bytes_from="stats" if snapshot_bytes else "file",
                snapshot_seconds=getattr(stats, "snapshot_seconds", None),
            )
        out[str(i)] = figures
    return out


def _sample_rss(cluster: Any, peak: dict[int, int]) -> None:
    for i in cluster.ids:
        rss = rss_bytes(cluster.ref(i))
        if rss is not None:
            peak[i] = max(peak.get(i, 0), rss)


def _start_cluster(directory: str, opts: ScaleOptions) -> Any:
    from feitian.testing.coord import CoordReplicas

    cluster = CoordReplicas(
        directory,
        3,
        secure=opts.secure,
        snapshot_every_entries=opts.snapshot_every_entries,
        keep_entries_after_snapshot=opts.keep_entries_after_snapshot,
    )
    cluster.start_all()
    return cluster


# -- the measurements -----------------------------------------------------------------------------------------------


async def _acquire(
    workers: WorkerProcesses, cluster: Any, total: int, rss_peak: dict[int, int], say: Say
) -> dict[str, Any]:
    """Go, follow the workers until every lock is taken (or given up), print progress."""
    workers.go()
    started = time.perf_counter()
    samples: list[tuple[float, int]] = [(0.0, 0)]
    last_progress, last_said = started, started
    while not all(s.done for s in workers.statuses):
        await asyncio.sleep(POLL_S)  # polling pace
        workers.check_alive()
        now = time.perf_counter()
        held = workers.held
        if held > samples[-1][1]:
            last_progress = now
        samples.append((now - started, held))
        _sample_rss(cluster, rss_peak)
        if now - last_said >= PROGRESS_EVERY_S:
            last_said = now
            rate = held / (now - started)
            say(
                f"locks held {held:,}/{total:,} ({rate:,.0f}/s), sessions "
                f"{sum(s.sessions for s in workers.statuses):,}, lost {workers.lost}, errors {workers.errors}"
            )
        if now - last_progress > NO_PROGRESS_S:
            raise UnavailableError(
                f"coord-scale: no lock taken for {NO_PROGRESS_S:g} s ({held:,} of {total:,} held)"
                + (f"; last error: {workers.last_error()}" if workers.last_error() else "")
            )
    seconds = max(s.t for s in workers.statuses) or (time.perf_counter() - started)
    held = workers.held
    tenth = next(((t, n) for t, n in samples if n >= 0.9 * held), samples[-1])
    end = samples[-1][0]
    last_tenth = (held - tenth[1]) / (end - tenth[0]) if end > tenth[0] and held > tenth[1] else None
    return {
        "held": held,
        "errors": workers.errors,
        "last_error": workers.last_error(),
        "seconds": round(seconds, 2),
        "locks_per_s": round(held / seconds) if seconds else None,
        "locks_per_s_last_tenth": round(last_tenth) if last_tenth else None,
    }


async def _catchup(cluster: Any, rpc: Client, opts: ScaleOptions, say: Say) -> dict[str, Any]:
    """SIGKILL a follower, write until the leader's log is compacted past it, start it, time until a
    linearizable read on it returns the last write."""
    leader = await _leader(cluster, rpc)
    follower = next(i for i in cluster.ids if i != leader)
    await asyncio.to_thread(cluster.kill, follower)
    writers = [cluster.client(rpc) for _ in range(CATCHUP_WRITERS)]
    await writers[0].create("/scale-catchup/", parents=True)
    # Proposed after the kill, committed now: the leader's commit index is past every entry the follower has.
    status = await _status(rpc, cluster.addresses[await _leader(cluster, rpc)])
    if status is None:
        raise UnavailableError("coord-scale: the leader does not answer coord.Status")
    behind = status.replica.commit_index
    say(
        f"follower catch-up: replica {follower} killed (its log ends before index {behind:,}); "
        "writing until the leader's log is compacted past it"
    )
    await asyncio.gather(*(w.create(f"/scale-catchup/k{n}", b"0") for n, w in enumerate(writers)))
    writes = len(writers)
    stop = asyncio.Event()

    async def write(n: int, client: Any) -> None:
        nonlocal writes
        while not stop.is_set():
            await client.set(f"/scale-catchup/k{n}", b"%d" % writes)
            writes += 1

    tasks = [asyncio.ensure_future(write(n, w)) for n, w in enumerate(writers)]
    started = time.perf_counter()
    try:
        while True:
            for task in tasks:
                if task.done():
                    task.result()  # a failed writer fails the measurement
            status = await _status(rpc, cluster.addresses[await _leader(cluster, rpc)])
            if status is not None and status.replica.snapshot_index - opts.keep_entries_after_snapshot > behind + 1:
                break
            if time.perf_counter() - started > CATCHUP_TIMEOUT_S:
                raise UnavailableError(f"coord-scale: the log was not compacted within {CATCHUP_TIMEOUT_S:g} s")
            await asyncio.sleep(POLL_S)  # polling pace
    finally:
        stop.set()
        await asyncio.gather(*tasks, return_exceptions=True)
    compaction_s = time.perf_counter() - started
    marker = b"%d" % writes
    await writers[0].set("/scale-catchup/k0", marker)
    for w in writers:
        await w.close()
    say(f"follower catch-up: {writes:,} writes in {compaction_s:.1f} s; starting replica {follower}")
    started = time.perf_counter()
    await asyncio.to_thread(cluster.start, follower)
    serving_s = time.perf_counter() - started
    address = cluster.addresses[follower]
    while True:
        with contextlib.suppress(FeitianError):
            reply = await rpc.call(address, GetRequest("/scale-catchup/k0", False), timeout=2)
            if reply.value == marker:
                break
        if time.perf_counter() - started > CATCHUP_TIMEOUT_S:
            raise UnavailableError(f"coord-scale: replica {follower} did not catch up within {CATCHUP_TIMEOUT_S:g} s")
        await asyncio.sleep(0.02)  # polling pace
    seconds = time.perf_counter() - started
    after = await _status(rpc, address)
    return {
        "replica": follower,
        "killed_below_index": behind,
        "writes": writes,
        "compaction_s": round(compaction_s, 2),
        "process_serving_s": round(serving_s, 2),
        "seconds": round(seconds, 2),
        "by_snapshot": bool(after and after.replica.snapshots_installed > 0),
    }


async def _failover(cluster: Any, rpc: Client, workers: WorkerProcesses) -> float:
    """Seconds from SIGKILL of a lock holder's process until a waiter here holds the lock."""
    prefix = "/scale-failover/"
    await workers.start("bench-scale-holder", [(1, 1, 0)], prefix, 1)
    workers.go()
    await workers.wait(lambda: workers.statuses[0].held == 1, 60, "the failover holder took its lock")
    client = cluster.client(rpc, session_ttl_ms=workers.ttl_ms)
    path = lock_path(prefix, 0)
    waiter = asyncio.ensure_future(client.lock(path).acquire())
    try:

        async def queued() -> bool:
            return len((await client.list(path + "/")).children) >= 2

        deadline = time.monotonic() + 30
        while not await queued():  # the waiter's contender node is there: it waits behind the holder
            if waiter.done() or time.monotonic() > deadline:
                raise UnavailableError("coord-scale: the failover waiter did not queue behind the holder")
            await asyncio.sleep(0.02)  # polling pace
        killed = time.perf_counter()
        await workers.kill(0)
        lease = await asyncio.wait_for(waiter, 60)
        seconds = time.perf_counter() - killed
        await lease.release()
        return round(seconds, 3)
    finally:
        if not waiter.done():
            waiter.cancel()
        await asyncio.gather(waiter, return_exceptions=True)
        await client.close()


async def _main_run(tmp: str, opts: ScaleOptions, say: Say) -> dict[str, Any]:
    mode = "secured" if opts.secure else "insecure"
    say(f"starting 3 coord replicas ({mode})")
    cluster = await asyncio.to_thread(_start_cluster, os.path.join(tmp, "nuwa"), opts)
    workers = WorkerProcesses(cluster.cluster.dir, tmp, opts.session_ttl_ms)
    holder = WorkerProcesses(cluster.cluster.dir, tmp, opts.session_ttl_ms)
    rss_peak: dict[int, int] = {}
    rpc = None
    try:
        rpc = await cluster.rpc("bench-scale")
        await _leader(cluster, rpc)
        say(f"{opts.procs} client processes: {opts.sessions:,} sessions, {opts.locks:,} locks")
        await workers.start("bench-scale", shares(opts.sessions, opts.locks, opts.procs), "/scale/", opts.concurrency)
        result: dict[str, Any] = {"acquire": await _acquire(workers, cluster, opts.locks, rss_peak, say)}
        leader = await _leader(cluster, rpc)
        status = await _status(rpc, cluster.addresses[leader])
        sessions_held = status.sessions if status is not None else None
        result["catchup"] = await _catchup(cluster, rpc, opts, say)
        say("lock failover at full size: SIGKILL of a holder")
        result["failover_s"] = await _failover(cluster, rpc, holder)
        _sample_rss(cluster, rss_peak)
        result["replicas"] = await _replica_figures(cluster, rpc, rss_peak)
        workers.check_alive()
        status = await _status(rpc, cluster.addresses[await _leader(cluster, rpc)])
        sessions_end = status.sessions if status is not None else None
        result["sessions_lost"] = {
            "clients": workers.lost,
            "leader": (
                max(0, sessions_held - sessions_end) if sessions_held is not None and sessions_end is not None else None
            ),
            "at_end": sessions_end,
            "after_acquire": sessions_held,
        }
        return result
    finally:
        await workers.kill()
        await holder.kill()
        if rpc is not None:
            await rpc.close()
        stuck = await asyncio.to_thread(cluster.stop)
        if stuck:
            say(f"processes that would not stop: {[r.pid for r in stuck]}")


async def _burst(tmp: str, opts: ScaleOptions, say: Say) -> dict[str, Any]:
    """``burst_sessions`` sessions and as many lock acquisitions at once on a fresh cluster."""
    n = opts.burst_sessions
    say(f"burst: a fresh cluster, {n:,} new sessions + {n:,} acquisitions at once")
    cluster = await asyncio.to_thread(_start_cluster, os.path.join(tmp, "burst"), opts)
    workers = WorkerProcesses(cluster.cluster.dir, tmp, opts.session_ttl_ms)
    rpc = None
    try:
        rpc = await cluster.rpc("bench-scale-burst")
        await _leader(cluster, rpc)
        await workers.start("bench-scale-burst", shares(n, n, opts.procs), "/burst/", 0)
        workers.go()
        await workers.wait(lambda: all(s.done for s in workers.statuses), 300, "the burst's locks taken")
        seconds = max(s.t for s in workers.statuses)
        hold_until = time.monotonic() + opts.session_ttl_ms / 1000
        await workers.wait(lambda: time.monotonic() >= hold_until, opts.session_ttl_ms / 1000 + 60, "one TTL")
        status = await _status(rpc, cluster.addresses[await _leader(cluster, rpc)])
        figures = await _replica_figures(cluster, rpc, {})
        return {
            "sessions": n,
            "locks": n,
            "held": workers.held,
            "errors": workers.errors,
            "last_error": workers.last_error(),
            "seconds": round(seconds, 2),
            "sessions_lost": workers.lost,
            "sessions_lost_leader": max(0, n - status.sessions) if status is not None else None,
            "loop_lag_max_ms": max((f.get("loop_lag_max_ms") or 0.0 for f in figures.values()), default=None),
        }
    finally:
        await workers.kill()
        if rpc is not None:
            await rpc.close()
        stuck = await asyncio.to_thread(cluster.stop)
        if stuck:
            say(f"processes that would not stop: {[r.pid for r in stuck]}")


def run_burst(opts: ScaleOptions, directory: str, progress: Say | None = None) -> dict[str, Any]:
    """Only the burst (a fresh cluster in ``directory``): what a test of the session storm runs."""
    return run(_burst(directory, opts.validate(), progress or (lambda _msg: None)))


# -- targets and the report -----------------------------------------------------------------------------------------


def _targets(result: dict[str, Any]) -> dict[str, dict[str, Any]]:
    out: dict[str, dict[str, Any]] = {}

    def add(name: str, value: Any, target: Any, met: bool | None) -> None:
        out[name] = {"value": value, "target": target, "met": met}

    replicas = result["replicas"].values()
    lost = result["sessions_lost"]
    all_held = result["acquire"]["held"] == result["locks"]
    no_loss = lost["clients"] == 0 and lost["leader"] == 0
    held = f"{result['acquire']['held']:,} held, {lost['clients']} lost (clients), {lost['leader']} (replicated)"
    add("every lock held, no session lost", held, f"{TARGET_LOCKS:,} held, 0 lost", all_held and no_loss)
    stalls = [r.get("loop_lag_max_ms") for r in replicas]
    stall = None if None in stalls or not stalls else max(stalls)
    add("longest loop stall ms", stall, MAX_STALL_MS, stall is not None and stall < MAX_STALL_MS)
    own = [r.get("loop_lag_max_busy_ms") for r in replicas]
    busiest = None if None in own or not own else max(own)
    add(
        "longest loop stall while the replica itself ran, ms",
        busiest,
        MAX_STALL_MS,
        busiest is not None and busiest < MAX_STALL_MS,
    )
    rss = max((r.get("rss_peak_bytes") or r.get("rss_bytes") or 0 for r in replicas), default=0)
    add("RSS per replica GiB", round(rss / 2**30, 3), MAX_RSS_BYTES / 2**30, rss <= MAX_RSS_BYTES)
    catchup = result["catchup"]["seconds"]
    add("follower catch-up s", catchup, MAX_CATCHUP_S, catchup < MAX_CATCHUP_S)
    add("lock failover s", result["failover_s"], MAX_FAILOVER_S, result["failover_s"] < MAX_FAILOVER_S)
    burst = result.get("burst")
    if burst is not None:
        met = burst["sessions_lost"] == 0 and burst["sessions_lost_leader"] == 0 and burst["held"] == burst["locks"]
        add("burst: every lock held, no session lost", burst["sessions_lost"], 0, met)
    return out


def run_coord_scale_bench(opts: ScaleOptions, progress: Say | None = None) -> dict[str, Any]:
    say = progress or (lambda _msg: None)
    opts.validate()

    async def main(tmp: str) -> dict[str, Any]:
        result: dict[str, Any] = {
            "locks": opts.locks,
            "sessions": opts.sessions,
            "procs": opts.procs,
            "concurrency": opts.concurrency,
            "secure": opts.secure,
            "session_ttl_ms": opts.session_ttl_ms,
            "snapshot_every_entries": opts.snapshot_every_entries,
            "keep_entries_after_snapshot": opts.keep_entries_after_snapshot,
        }
        result.update(await _main_run(tmp, opts, say))
        if opts.burst_sessions:
            result["burst"] = await _burst(tmp, opts, say)
        result["at_target_scale"] = opts.locks >= TARGET_LOCKS
        result["targets"] = _targets(result)
        return result

    if opts.keep:
        tmp = tempfile.mkdtemp(prefix="feitian-bench-coord-scale-", dir=opts.directory)
        say(f"keeping the clusters' directories (logs, data) in {tmp}")
        return run(main(tmp))
    with tempfile.TemporaryDirectory(prefix="feitian-bench-coord-scale-", dir=opts.directory) as tmp:
        return run(main(tmp))


def _mib(n: int | None) -> str:
    return "-" if n is None else f"{n / 2**20:,.1f}"


def print_report(result: dict[str, Any]) -> None:
    print(
        f"3 coord replicas ({'secured' if result['secure'] else 'insecure'}); {result['locks']:,} locks over "
        f"{result['sessions']:,} sessions in {result['procs']} client processes ({result['concurrency']} in flight "
        f"each); session TTL {result['session_ttl_ms'] / 1000:g} s; snapshot every "
        f"{result['snapshot_every_entries']:,} entries, {result['keep_entries_after_snapshot']:,} kept"
    )
    a = result["acquire"]
    print(
        f"acquisition: {a['held']:,} locks in {a['seconds']} s = {a['locks_per_s']} locks/s "
        f"(last tenth {a['locks_per_s_last_tenth']}/s); errors {a['errors']}"
        + (f" ({a['last_error']})" if a["errors"] else "")
    )
    head = f"{'replica':<8}{'role':<10}{'RSS MiB':>9}{'peak MiB':>10}{'stall ms':>10}{'own ms':>8}{'stalls':>8}"
    head += f"{'gc ms':>8}{'full gcs':>9}"
    head += f"{'nodes':>10}"
    print(head + f"{'sessions':>10}{'snap index':>12}{'snap MiB':>10}{'snap s':>8}")
    for i, r in result["replicas"].items():
        snap_s = r.get("snapshot_seconds")
        print(
            f"{i:<8}{r.get('role', '?'):<10}{_mib(r.get('rss_bytes')):>9}{_mib(r.get('rss_peak_bytes')):>10}"
            f"{r.get('loop_lag_max_ms', '-'):>10}{r.get('loop_lag_max_busy_ms', '-'):>8}{r.get('loop_stalls', '-'):>8}"
            f"{r.get('gc_pause_max_ms', '-'):>8}{r.get('gc_full_collections', '-'):>9}"
            f"{r.get('nodes', '-'):>10}"
            f"{r.get('sessions', '-'):>10}{r.get('snapshot_index', '-'):>12}{_mib(r.get('snapshot_bytes')):>10}"
            f"{'-' if snap_s is None else snap_s:>8}"
        )
    c = result["catchup"]
    print(
        f"follower catch-up: replica {c['replica']} killed (its log ends before index {c['killed_below_index']:,}), "
        f"{c['writes']:,} writes "
        f"until compacted past it ({c['compaction_s']} s); a linearizable read on it {c['seconds']} s after its "
        f"start (process serving after {c['process_serving_s']} s; by snapshot: {'yes' if c['by_snapshot'] else 'no'})"
    )
    print(f"lock failover at full size (SIGKILL of the holder): {result['failover_s']} s")
    lost = result["sessions_lost"]
    print(
        f"sessions lost during the run: {lost['clients']} (clients), {lost['leader']} (replicated count "
        f"{lost['after_acquire']} -> {lost['at_end']})"
    )
    b = result.get("burst")
    if b is not None:
        print(
            f"burst on a fresh cluster: {b['sessions']:,} sessions + {b['locks']:,} acquisitions at once: "
            f"{b['held']:,} held in {b['seconds']} s; sessions lost within a TTL {b['sessions_lost']} (clients), "
            f"{b['sessions_lost_leader']} (replicated count); errors {b['errors']}; "
            f"longest stall {b['loop_lag_max_ms']} ms"
        )
    scale = "" if result["at_target_scale"] else f" (at {result['locks']:,} locks: below the target's scale)"
    for name, target in result["targets"].items():
        met = {True: "met", False: "NOT met", None: "n/a"}[target["met"]]
        print(f"target {name}: {target['value']} (target {target['target']}) {met}{scale}")
