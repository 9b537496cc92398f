"""Partitions and a frozen leader between real Nuwa replica processes; consensus traffic crosses the fault proxy.

* an isolated old leader answers no linearizable read, extends no session and acknowledges no write, while the
  majority elects a new leader that keeps serving; healed, the old leader catches up;
* a SIGSTOPped leader: the majority takes over, and a client's session (and its ephemeral node) survives the
  failover, because the new leader restarts every session's TTL (docs/coord.md, "Leader change").
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from coord_workload import ProxiedNuwa, proxied_nuwa

from feitian.coord.messages import GetRequest, HeartbeatRequest, SetRequest
from feitian.errors import FeitianError
from feitian.testing.waiting import wait_for_condition


@pytest.fixture
async def nuwa(tmp_path: Path) -> AsyncIterator[ProxiedNuwa]:
    async with proxied_nuwa(tmp_path) as cluster:
        yield cluster


async def test_isolated_leader_answers_no_linearizable_read_and_the_majority_serves(nuwa: ProxiedNuwa) -> None:
    rpc = nuwa.rpc
    client = nuwa.client(timeout_s=20, attempt_timeout_s=1, session_ttl_ms=6000)
    try:
        await client.create("/p/k", b"before", parents=True)
        session = await client.session()
        await client.create("/p/alive", ephemeral=True)
        old = await nuwa.leader()
        old_address = nuwa.addresses[old]
        old_term = (await nuwa.statuses({old}))[old].replica.term

        nuwa.proxy.isolate(old)

        majority = {i for i in nuwa.addresses if i != old}
        new = await nuwa.leader(majority)
        assert new != old and (await nuwa.statuses({new}))[new].replica.term > old_term
        await client.set("/p/k", b"after")
        assert (await client.get("/p/k")).value == b"after"

        # The old leader's state is stale, and it says nothing that needs a quorum.
        assert (await rpc.call(old_address, GetRequest("/p/k", stale=True), timeout=2)).value == b"before"
        for _ in range(3):
            with pytest.raises(FeitianError) as refused:
                await rpc.call(old_address, GetRequest("/p/k"), timeout=1.5)
            assert refused.value.code in ("deadline_exceeded", "unavailable", "not_leader")
        with pytest.raises(FeitianError):
            await rpc.call(old_address, HeartbeatRequest(session.session_id), timeout=1.5)
        with pytest.raises(FeitianError):
            request = SetRequest(path="/p/k", value=b"minority", client_id="partition-test", request_seq=1)
            await rpc.call(old_address, request, timeout=1.5)

        # The session lives on through the new leader, and so does its ephemeral node.
        assert (await client.session()).session_id == session.session_id
        assert (await client.exists("/p/alive")).exists

        nuwa.proxy.heal()

        async def caught_up() -> bool:
            try:
                got = await rpc.call(old_address, GetRequest("/p/k"), timeout=1)
            except FeitianError:
                return False
            return bool(got.value == b"after")

        await wait_for_condition(caught_up, 20, "the old leader serving linearizable reads again")
        statuses = await nuwa.statuses()
        assert len(statuses) == 3 and sum(s.tracking for s in statuses.values()) == 1
        assert len({s.revision for s in statuses.values()}) == 1
    finally:
        await client.close()


async def test_frozen_leader_fails_over_and_sessions_survive(nuwa: ProxiedNuwa) -> None:
    client = nuwa.client(timeout_s=20, attempt_timeout_s=1, session_ttl_ms=6000)
    try:
        await client.create("/f/", parents=True)
        await client.create("/f/me", b"1", ephemeral=True)
        session = await client.session()
        frozen = await nuwa.leader()
        nuwa.replicas.freeze(frozen)
        try:
            await nuwa.leader({i for i in nuwa.addresses if i != frozen})
            for n in range(20):
                await client.set("/f/me", b"%d" % n)
            assert (await client.get("/f/me")).value == b"19"
            assert (await client.session()).session_id == session.session_id
        finally:
            nuwa.replicas.resume(frozen)

        async def all_current() -> bool:
            statuses = await nuwa.statuses()
            return len(statuses) == 3 and len({s.revision for s in statuses.values()}) == 1

        await wait_for_condition(all_current, 20, "the resumed replica caught up")
        assert (await client.get("/f/me", stale=True)).value == b"19"
    finally:
        await client.close()
