"""Concurrent Nuwa clients (``CoordClient``: leader following, retried writes deduplicated by the state machine)
read, write and compare-and-set (``set`` with ``version``) a few files while the leader is partitioned away, the
next leader is frozen (SIGSTOP), a follower is isolated and the leader is killed (SIGKILL) and restarted; the
recorded history must be linearizable.
Real processes; partitions through the fault proxy. A longer soak runs with ``-m slow``."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from coord_workload import (
    INITIAL,
    NuwaRegisterStore,
    ProxiedNuwa,
    RegisterWorkload,
    faults_in_turn,
    proxied_nuwa,
)

from feitian.coord import CoordClient
from feitian.testing.linearizability import CasRegister, OpKind, Outcome, check

KEYS = ["a", "b", "c", "d"]
ROOT = "/lin/"


@pytest.fixture
async def nuwa(tmp_path: Path) -> AsyncIterator[ProxiedNuwa]:
    async with proxied_nuwa(tmp_path) as cluster:
        yield cluster


async def run_history(nuwa: ProxiedNuwa, tmp_path: Path, *, clients: int, ops: int, rounds: int, seed: int) -> None:
    setup = nuwa.client()
    for key in KEYS:
        await setup.create(ROOT + key, INITIAL.encode(), parents=True)
    await setup.close()
    coord_clients: list[CoordClient] = [nuwa.client(timeout_s=5, attempt_timeout_s=1) for _ in range(clients)]
    try:
        stores = [NuwaRegisterStore(c, ROOT) for c in coord_clients]
        workload = RegisterWorkload(stores, KEYS, seed=seed, think_s=0.02)
        faults: list[str] = []

        async def nemesis() -> None:
            for _ in range(rounds):
                await faults_in_turn(nuwa, workload, faults, ops=ops)

        await workload.run(nemesis())
    finally:
        for c in coord_clients:
            await c.close()

    history = workload.history.operations()
    path = tmp_path / "history.jsonl"
    workload.history.dump(str(path))
    result = check(history, CasRegister(initial_value=INITIAL))
    summary = f"faults {faults}; {workload.stats}; history in {path}"
    assert result.valid is True, f"{summary}\n{result.explain()}"
    done = [o for o in history if o.outcome is Outcome.OK]
    assert {o.kind for o in done} == {OpKind.READ, OpKind.WRITE, OpKind.CAS}, summary
    assert {o.result for o in done if o.kind is OpKind.CAS} == {True, False}, summary


async def test_history_under_faults_in_turn_is_linearizable(nuwa: ProxiedNuwa, tmp_path: Path) -> None:
    await run_history(nuwa, tmp_path, clients=6, ops=100, rounds=1, seed=21)


@pytest.mark.slow
@pytest.mark.timeout(900)
async def test_soak_history_is_linearizable(nuwa: ProxiedNuwa, tmp_path: Path) -> None:
    await run_history(nuwa, tmp_path, clients=10, ops=300, rounds=5, seed=22)
