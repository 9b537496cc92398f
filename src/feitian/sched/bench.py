"""Benchmark of Fuxi's allocator core in one process (issue 18, "Scale of the core").

:func:`bench_core` builds a simulated cluster — machines on racks of 50, applications across ten priorities and
eight quota groups (quotas summing to the cluster, so lending happens), a third of the units preferring three
machines — fills it, then runs rounds of churn: grants finishing (returned), demand arriving (+deltas),
applications finishing and new ones submitted so the number of concurrent applications stays constant, with a
``tick`` per round of simulated 100 ms. A *grant decision* is one :class:`SendGrant`. It reports decisions per
CPU second and CPU time per decision (process CPU time of every allocator call of the churn phase: returns,
deltas, submissions, finishes and ticks; not the driver's own bookkeeping), and the memory of a filled
allocator (peak RSS growth; tracemalloc on request).

Run: ``python -m feitian.sched.bench [--machines N] [--apps N] [--rounds N] [--memory-machines N]``; the
``feitian bench sched`` command is meant to call :func:`bench_core`.
"""

from __future__ import annotations

import argparse
import gc
import json
import random
import resource
import time
import tracemalloc
from typing import Any

from feitian.sched.core import (
    Allocator,
    AppSpec,
    DemandDelta,
    Effect,
    Locality,
    MachineSpec,
    ReturnGrants,
    SchedLimits,
    SchedPolicy,
    SendGrant,
    Shape,
    UnitSpec,
)

__all__ = ["bench_core", "main"]

CORE = 1000
GIB = 1 << 30
ROUND_NS = 100_000_000
RACK_SIZE = 50
GROUPS = 8
PRIORITIES = 10


class _Driver:
    """Keeps what an application master would: its seq numbers and the grants it holds."""

    def __init__(self, machines: int, apps: int, seed: int) -> None:
        self.rng = random.Random(seed)
        self.demand_scale = max(1, machines // 5_000)  # keep the cluster oversubscribed at any size
        self.alloc = Allocator(
            SchedLimits(max_apps=max(100_000, 2 * apps)),
            SchedPolicy(preempt_after_ns=5 * 10**9, heartbeat_timeout_ns=10**15),
        )
        self.now = 0
        self.seq: dict[str, int] = {}
        self.held: list[tuple[str, int]] = []  # (app, grant id), in no order
        self.next_app = 0
        self.apps: list[str] = []
        self.machine_names = [f"m{i:06d}" for i in range(machines)]
        cluster_cpu = machines * 32 * CORE
        for g in range(GROUPS):
            self.alloc.set_quota(f"g{g}", {"cpu": cluster_cpu // GROUPS})
        for i, name in enumerate(self.machine_names):
            capacity = {"cpu": 32 * CORE, "memory": 128 * GIB, "disk": 4 << 40, "net": 10_000}
            self.alloc.add_machine(MachineSpec(name, f"rack{i // RACK_SIZE:04d}", capacity), 0)
        for _ in range(apps):
            self.submit()

    def submit(self) -> None:
        rng = self.rng
        name = f"app{self.next_app:07d}"
        self.next_app += 1
        priority = min(PRIORITIES - 1, int(rng.expovariate(0.4)))
        self.alloc.submit_app(AppSpec(name, priority, f"g{rng.randrange(GROUPS)}"))
        self.seq[name] = 0
        self.apps.append(name)
        shape = Shape.of(cpu=rng.choice([500, 1000, 2000, 4000]), memory=rng.choice([1, 2, 4, 8]) * GIB)
        locality = Locality()
        if rng.random() < 0.33:
            locality = Locality(tuple(rng.sample(self.machine_names, 3)))
        self.delta(name, rng.randint(10, 100) * self.demand_scale, UnitSpec(shape, locality))

    def delta(self, app: str, n: int, spec: UnitSpec | None = None) -> None:
        self.seq[app] += 1
        self.alloc.handle(DemandDelta(app, self.seq[app], "w", n, spec), self.now)

    def tick(self) -> int:
        return self.record(self.alloc.tick(self.now))

    def record(self, effects: list[Effect]) -> int:
        count = 0
        for effect in effects:
            if isinstance(effect, SendGrant):
                self.held.append((effect.grant.app, effect.grant.grant_id))
                count += 1
        return count

    def churn(self, returns: int, arrivals: int, finishes: int) -> float:
        """One round of churn; returns the CPU seconds spent inside the allocator."""
        rng, held, alloc = self.rng, self.held, self.alloc
        by_app: dict[str, list[int]] = {}
        for _ in range(min(returns, len(held))):
            i = rng.randrange(len(held))
            held[i], held[-1] = held[-1], held[i]
            app, gid = held.pop()
            if gid in alloc.held:  # not revoked, its application not finished
                by_app.setdefault(app, []).append(gid)
        spent = 0.0
        for app, gids in by_app.items():
            self.seq[app] += 1
            start = time.process_time()
            alloc.handle(ReturnGrants(app, self.seq[app], tuple(gids)), self.now)
            spent += time.process_time() - start
        for _ in range(arrivals):
            app = rng.choice(self.apps)
            start = time.process_time()
            self.delta(app, rng.randint(1, 20))
            spent += time.process_time() - start
        for _ in range(finishes):
            app = self.apps.pop(rng.randrange(len(self.apps)))
            start = time.process_time()
            alloc.finish_app(app)
            self.submit()
            spent += time.process_time() - start
        return spent


def bench_core(
    machines: int = 5_000, apps: int = 10_000, rounds: int = 200, seed: int = 0, returns_per_round: int = 2_000
) -> dict[str, Any]:
    """Fill a cluster, then churn; grant decisions per CPU second in each phase."""
    build_start = time.process_time()
    driver = _Driver(machines, apps, seed)
    build_cpu = time.process_time() - build_start
    fill_start = time.process_time()
    filled = driver.tick()
    fill_cpu = time.process_time() - fill_start
    steady_decisions, steady_cpu = _steady(driver, rounds, returns_per_round, apps)
    alloc = driver.alloc
    waiting = sum(u.outstanding for a in alloc.apps.values() for u in a.units.values())
    return {
        "machines": machines,
        "apps": len(alloc.apps),
        "build_cpu_s": round(build_cpu, 3),
        "fill_decisions": filled,
        "fill_cpu_s": round(fill_cpu, 3),
        "fill_decisions_per_s": round(filled / fill_cpu) if fill_cpu else None,
        "rounds": rounds,
        "steady_decisions": steady_decisions,
        "steady_cpu_s": round(steady_cpu, 3),
        "steady_decisions_per_s": round(steady_decisions / steady_cpu) if steady_cpu else None,
        "steady_cpu_us_per_decision": round(steady_cpu / steady_decisions * 1e6, 1) if steady_decisions else None,
        "grants_held": len(alloc.held),
        "demand_waiting": waiting,
    }


def _steady(driver: _Driver, rounds: int, returns: int, apps: int) -> tuple[int, float]:
    """``rounds`` rounds of churn (``returns`` grants returned, a twentieth as many new demands, a few
    applications finishing) each followed by a tick: the grant decisions and the CPU seconds they took."""
    decisions, cpu = 0, 0.0
    for _ in range(rounds):
        driver.now += ROUND_NS
        cpu += driver.churn(returns, arrivals=returns // 20, finishes=apps // 2_000)
        start = time.process_time()
        effects = driver.alloc.tick(driver.now)
        cpu += time.process_time() - start
        decisions += driver.record(effects)
    return decisions, cpu


def bench_memory(
    machines: int = 100_000, apps: int = 10_000, rounds: int = 20, seed: int = 0, trace: bool = False
) -> dict[str, Any]:
    """A filled allocator at ``machines`` machines: its memory (peak RSS growth of this process, and tracemalloc
    when ``trace``), then ``rounds`` rounds of churn for the decisions per CPU second at that size."""
    gc.collect()
    rss_before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    if trace:
        tracemalloc.start()
    start = time.process_time()
    driver = _Driver(machines, apps, seed)
    build_cpu = time.process_time() - start
    start = time.process_time()
    filled = driver.tick()
    fill_cpu = time.process_time() - start
    traced = tracemalloc.get_traced_memory()[0] if trace else None
    if trace:
        tracemalloc.stop()
    rss_after = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    returns = 2_000 * max(1, machines // 5_000)
    decisions, cpu = _steady(driver, rounds, returns, apps)
    return {
        "machines": machines,
        "apps": apps,
        "build_cpu_s": round(build_cpu, 3),
        "fill_decisions": filled,
        "fill_decisions_per_s": round(filled / fill_cpu) if fill_cpu else None,
        "grants_held_after_fill": filled,
        "traced_bytes": traced,
        "peak_rss_growth_bytes": rss_after - rss_before,
        "peak_rss_bytes": rss_after,
        "steady_decisions": decisions,
        "steady_decisions_per_s": round(decisions / cpu) if cpu else None,
        "steady_cpu_us_per_decision": round(cpu / decisions * 1e6, 1) if decisions else None,
    }


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("--machines", type=int, default=5_000)
    parser.add_argument("--apps", type=int, default=10_000)
    parser.add_argument("--rounds", type=int, default=200)
    parser.add_argument("--memory-machines", type=int, default=100_000, help="0: skip the memory run")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args(argv)
    result = {"core": bench_core(args.machines, args.apps, args.rounds)}
    if args.memory_machines:
        result["memory"] = bench_memory(args.memory_machines, args.apps)
    if args.json:
        print(json.dumps(result))
        return
    for section, figures in result.items():
        print(section)
        for key, value in figures.items():
            print(f"  {key:30} {value}")


if __name__ == "__main__":
    main()
