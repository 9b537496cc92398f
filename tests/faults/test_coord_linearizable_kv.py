"""Concurrent clients read, write and compare-and-set a few keys of the replicated KV store (the consensus layer
Nuwa runs on) while the leader is partitioned away, the next leader is frozen (SIGSTOP), a follower is
isolated and the leader is killed (SIGKILL) and restarted; the recorded history must be linearizable
(feitian.testing.linearizability). Real processes; partitions through the fault proxy."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from coord_workload import KvRegisterStore, ProxiedKv, RegisterWorkload, faults_in_turn, proxied_kv

from feitian.testing.linearizability import OpKind, Outcome, check

CLIENTS = 6
KEYS = ["a", "b", "c", "d"]


@pytest.fixture
async def kv(tmp_path: Path) -> AsyncIterator[ProxiedKv]:
    async with proxied_kv(tmp_path) as cluster:
        yield cluster


async def test_history_under_faults_in_turn_is_linearizable(kv: ProxiedKv, tmp_path: Path) -> None:
    stores = [KvRegisterStore(kv.client, list(kv.addresses.values()), attempt_timeout_s=1.0) for _ in range(CLIENTS)]
    workload = RegisterWorkload(stores, KEYS, seed=11, think_s=0.02)
    faults: list[str] = []
    await workload.run(faults_in_turn(kv, workload, faults, ops=100))

    ops = workload.history.operations()
    path = tmp_path / "history.jsonl"
    workload.history.dump(str(path))
    result = check(ops)
    summary = f"faults {faults}; {workload.stats}; history in {path}"
    assert result.valid is True, f"{summary}\n{result.explain()}"
    # The run exercised what it claims to: every kind completed, CAS both ways.
    done = [o for o in ops if o.outcome is Outcome.OK]
    assert {o.kind for o in done} == {OpKind.READ, OpKind.WRITE, OpKind.CAS}, summary
    assert {o.result for o in done if o.kind is OpKind.CAS} == {True, False}, summary
