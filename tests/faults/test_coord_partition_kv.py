"""Partitions between real replica processes of the replicated KV store (the consensus layer Nuwa runs on), made
with the fault-injecting proxy: every replica-to-replica connection crosses a proxy link the test can cut.

An isolated old leader must never answer a linearizable read (ReadIndex needs a quorum), while the majority
elects a new leader and keeps serving; after healing, the old leader catches up."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from coord_workload import ProxiedKv, kv_stats, proxied_kv

from feitian.errors import FeitianError
from feitian.examples.kv import Get, KvClient, Put
from feitian.testing.waiting import wait_for_condition


@pytest.fixture
async def kv(tmp_path: Path) -> AsyncIterator[ProxiedKv]:
    async with proxied_kv(tmp_path) as cluster:
        yield cluster


async def test_isolated_leader_refuses_linearizable_reads_and_the_majority_serves(kv: ProxiedKv) -> None:
    client = kv.client
    store = KvClient(client, list(kv.addresses.values()), timeout_s=20, attempt_timeout_s=1)
    await store.put("k", b"before")
    old = await kv.leader()
    old_address = kv.addresses[old]
    old_term = (await kv_stats(client, {old: old_address}))[old].term

    kv.proxy.isolate(old)  # a blackhole: the old leader only notices through its own timeouts

    # The majority elects a new leader in a later term and accepts writes.
    majority = {i for i in kv.addresses if i != old}
    new = await kv.leader(majority)
    new_stats = await kv_stats(client, {new: kv.addresses[new]})
    assert new != old and new_stats[new].term > old_term
    majority_store = KvClient(client, [kv.addresses[i] for i in sorted(majority)], timeout_s=20, attempt_timeout_s=1)
    await majority_store.put("k", b"after")
    assert (await majority_store.get("k")).value == b"after"

    # The old leader still holds the old value (a stale read shows it) but never answers a linearizable read,
    # and never acknowledges a write.
    stale = await client.call(old_address, Get("k", stale=True), timeout=2)
    assert stale.value == b"before"
    for _ in range(3):
        with pytest.raises(FeitianError) as refused:
            await client.call(old_address, Get("k"), timeout=1.5)
        assert refused.value.code in ("deadline_exceeded", "unavailable", "not_leader")
    with pytest.raises(FeitianError):
        await client.call(old_address, Put("k", b"from-the-minority"), timeout=1.5)

    # Healed: the old leader rejoins as a follower, its linearizable reads see the majority's write, and the write
    # it was sent in the minority never happened.
    kv.proxy.heal()

    async def caught_up() -> bool:
        try:
            reply = await client.call(old_address, Get("k"), timeout=1)
        except FeitianError:
            return False
        return bool(reply.value == b"after")

    await wait_for_condition(caught_up, 20, "the old leader serving linearizable reads again")
    assert (await majority_store.get("k")).value == b"after"
    stats = await kv_stats(client, kv.addresses)
    assert len(stats) == 3 and sum(s.role == "leader" for s in stats.values()) == 1


async def test_one_way_partition_and_a_frozen_follower(kv: ProxiedKv) -> None:
    """The leader cannot reach one follower (but hears from it); then a follower is SIGSTOPped: with a majority
    connected, writes and linearizable reads go on throughout."""
    client = kv.client
    store = KvClient(client, list(kv.addresses.values()), timeout_s=20, attempt_timeout_s=1)
    await store.put("k", b"0")
    leader = await kv.leader()
    follower, other = [i for i in kv.addresses if i != leader]

    kv.proxy.link(leader, follower).cut()
    for n in range(1, 21):
        await store.put("k", b"%d" % n)
        assert (await store.get("k")).value == b"%d" % n

    kv.proxy.heal()
    kv.replicas.freeze(other)
    try:
        for n in range(21, 41):
            await store.put("k", b"%d" % n)
            assert (await store.get("k")).value == b"%d" % n
    finally:
        kv.replicas.resume(other)

    async def all_applied() -> bool:
        stats = await kv_stats(client, kv.addresses)
        return len(stats) == 3 and len({s.applied_index for s in stats.values()}) == 1

    await wait_for_condition(all_applied, 20, "every replica caught up")
    for address in kv.addresses.values():
        assert (await client.call(address, Get("k", stale=True), timeout=2)).value == b"40"
