"""The core benchmark still runs (at a toy size; timing belongs in the benchmark, not here)."""

from __future__ import annotations

from feitian.sched.bench import bench_core, bench_memory
from feitian.sched.core import check


def test_bench_core_runs_and_counts_decisions() -> None:
    result = bench_core(machines=40, apps=80, rounds=3, returns_per_round=50)
    assert result["fill_decisions"] > 0 and result["steady_decisions"] > 0
    assert result["apps"] == 80 and result["grants_held"] > 0


def test_bench_memory_reports_the_filled_allocator() -> None:
    result = bench_memory(machines=40, apps=20, rounds=1, trace=True)
    assert result["fill_decisions"] > 0 and result["traced_bytes"] > 0


def test_the_bench_cluster_keeps_the_invariants() -> None:
    from feitian.sched.bench import _Driver

    driver = _Driver(machines=30, apps=60, seed=3)
    driver.tick()
    for _ in range(5):
        driver.now += 10**8
        driver.churn(40, arrivals=5, finishes=1)
        driver.record(driver.alloc.tick(driver.now))
        assert check(driver.alloc) == []
