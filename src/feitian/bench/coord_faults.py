"""``feitian bench coord-faults``: Nuwa's availability while its leader keeps failing.

Three coord replicas (secured like ``feitian cluster up`` unless ``secure=False``, default Raft timing) serve
``clients`` closed-loop clients, each with its own connections, doing linearizable reads (80 %) and writes
(20 %) of 100 keys through ``feitian.coord``. Every 2-4 s (drawn from ``seed``) a nemesis finds the leader and
either SIGKILLs it (and starts it again at once, on the same data) or SIGSTOPs it (and SIGCONTs it at the next
fault), alternately. The run is cut in one-second intervals; the figures are how many intervals had no read,
and no write, completed, with the operations per second and the faults as they happened.
"""

from __future__ import annotations

import asyncio
import os
import random
import tempfile
import time
from collections.abc import Callable
from typing import Any

from feitian.coord import CoordClient
from feitian.errors import FeitianError, UnavailableError
from feitian.runtime.eventloop import run

KEYS = 100
READ_SHARE = 0.8


async def _leader(cluster: Any, rpc: Any, timeout_s: float = 30) -> int:
    deadline = time.monotonic() + timeout_s
    while (leader := await cluster.leader(rpc)) is None:
        if time.monotonic() > deadline:
            raise UnavailableError(f"no coord leader within {timeout_s} s")
        await asyncio.sleep(0.05)  # polling pace
    return int(leader)


async def _measure(
    tmp: str, seconds: float, clients: int, secure: bool, seed: int, say: Callable[[str], None]
) -> dict[str, Any]:
    from feitian.testing.coord import CoordReplicas

    cluster = CoordReplicas(os.path.join(tmp, "nuwa"), 3, election_ticks=20, secure=secure)
    say(f"starting 3 coord replicas ({'secured' if secure else 'insecure'})")
    await asyncio.to_thread(cluster.start_all)
    rpcs = []
    try:
        admin = await cluster.rpc("bench-faults-nemesis")
        rpcs.append(admin)
        await _leader(cluster, admin)
        setup = cluster.client(admin)
        await setup.create("/faults/", parents=True)
        await asyncio.gather(*(setup.create(f"/faults/k{i}", b"0") for i in range(KEYS)))
        await setup.close()
        users: list[CoordClient] = []
        for i in range(clients):
            rpc = await cluster.rpc(f"bench-faults-{i}")
            rpcs.append(rpc)
            users.append(cluster.client(rpc))
        reads: list[float] = []
        writes: list[float] = []
        failures: dict[str, int] = {}
        faults: list[dict[str, Any]] = []
        rng = random.Random(seed)
        started = time.monotonic()
        end = started + seconds

        async def client_loop(client: CoordClient, crng: random.Random) -> None:
            n = 0
            while time.monotonic() < end:
                key = f"/faults/k{crng.randrange(KEYS)}"
                reading = crng.random() < READ_SHARE
                try:
                    if reading:
                        await client.get(key)
                    else:
                        n += 1
                        await client.set(key, b"%d" % n)
                except FeitianError as exc:
                    failures[exc.code] = failures.get(exc.code, 0) + 1
                    continue
                (reads if reading else writes).append(time.monotonic() - started)

        async def nemesis() -> None:
            paused: int | None = None
            kill = True
            while True:
                wait = rng.uniform(2.0, 4.0)
                if time.monotonic() + wait >= end:
                    break
                await asyncio.sleep(wait)  # the nemesis's schedule
                if paused is not None:
                    await asyncio.to_thread(cluster.resume, paused)
                    paused = None
                try:
                    leader = await _leader(cluster, admin, timeout_s=max(0.1, end - time.monotonic()))
                except UnavailableError:
                    continue
                at = round(time.monotonic() - started, 2)
                if kill:
                    await asyncio.to_thread(cluster.kill, leader)
                    faults.append({"at_s": at, "fault": "SIGKILL", "replica": leader})
                    say(f"{at:6.2f}s SIGKILL replica {leader} (restarted at once)")
                    await asyncio.to_thread(cluster.start, leader)
                else:
                    await asyncio.to_thread(cluster.freeze, leader)
                    paused = leader
                    faults.append({"at_s": at, "fault": "SIGSTOP", "replica": leader})
                    say(f"{at:6.2f}s SIGSTOP replica {leader} (SIGCONT at the next fault)")
                kill = not kill
            if paused is not None:
                await asyncio.to_thread(cluster.resume, paused)

        say(f"{clients} clients for {seconds:g} s, a leader fault every 2-4 s")
        await asyncio.gather(nemesis(), *(client_loop(c, random.Random(seed * 1000 + i)) for i, c in enumerate(users)))
        for client in users:
            await client.close()
    finally:
        for rpc in rpcs:
            await rpc.close()
        stuck = await asyncio.to_thread(cluster.stop)
        if stuck:
            say(f"processes that would not stop: {[r.pid for r in stuck]}")
    intervals = int(seconds)
    reads_per_s = [0] * intervals
    writes_per_s = [0] * intervals
    for at in reads:
        if int(at) < intervals:
            reads_per_s[int(at)] += 1
    for at in writes:
        if int(at) < intervals:
            writes_per_s[int(at)] += 1
    return {
        "seconds": intervals,
        "clients": clients,
        "secure": secure,
        "seed": seed,
        "seconds_without_reads": sum(1 for n in reads_per_s if n == 0),
        "seconds_without_writes": sum(1 for n in writes_per_s if n == 0),
        "seconds_under_50_ops": sum(1 for r, w in zip(reads_per_s, writes_per_s, strict=True) if r + w < 50),
        "reads": len(reads),
        "writes": len(writes),
        "failures": failures,
        "faults": faults,
        "reads_per_s": reads_per_s,
        "writes_per_s": writes_per_s,
    }


def run_coord_faults_bench(
    seconds: float = 30.0,
    clients: int = 10,
    secure: bool = True,
    seed: int = 1,
    directory: str | None = None,
    progress: Callable[[str], None] | None = None,
) -> dict[str, Any]:
    say = progress or (lambda _msg: None)
    with tempfile.TemporaryDirectory(prefix="feitian-bench-coord-faults-", dir=directory) as tmp:
        return run(_measure(tmp, seconds, clients, secure, seed, say))


def print_report(result: dict[str, Any]) -> None:
    print(
        f"{result['clients']} clients, {result['seconds']} s, {len(result['faults'])} leader faults "
        f"({'secured' if result['secure'] else 'insecure'}, seed {result['seed']})"
    )
    print(f"seconds without a completed read:  {result['seconds_without_reads']}")
    print(f"seconds without a completed write: {result['seconds_without_writes']}")
    print(f"seconds under 50 operations:       {result['seconds_under_50_ops']}")
    print(f"reads {result['reads']}, writes {result['writes']}, failed calls {result['failures'] or 0}")
    print("second  reads  writes  fault")
    by_second: dict[int, list[str]] = {}
    for fault in result["faults"]:
        by_second.setdefault(int(fault["at_s"]), []).append(f"{fault['fault']} {fault['replica']}")
    for second, (r, w) in enumerate(zip(result["reads_per_s"], result["writes_per_s"], strict=True)):
        print(f"{second:>6}  {r:>5}  {w:>6}  {', '.join(by_second.get(second, []))}")
