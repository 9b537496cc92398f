"""Placement: new chunks, repair, balance, decommission, read order — unit tests and Hypothesis properties."""

from __future__ import annotations

import random
from collections import Counter

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from feitian.dfs.core import (
    ChunkBrief,
    CopyReason,
    PlacementPolicy,
    RepairNeed,
    ServerView,
    choose_replicas,
    plan_balance,
    plan_decommission,
    plan_repair,
    read_order,
    spread,
)
from feitian.errors import InvalidArgumentError

GiB = 1 << 30
CHUNK = 64 << 20
PROPS = settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def view(i: int, rack: int, used_gib: float = 0, cap_gib: int = 100, **kw: bool) -> ServerView:
    return ServerView(f"s{i}", f"r{rack}", cap_gib * GiB, int(used_gib * GiB), **kw)


servers_strategy = st.lists(
    st.builds(
        lambda rack, used, cap, live, decom: (rack, used, cap, live, decom),
        st.integers(0, 4),
        st.floats(0, 1),
        st.integers(1, 8),
        st.integers(0, 3).map(bool),  # live three times in four
        st.integers(0, 5).map(lambda n: n == 0),  # decommissioning one time in six
    ),
    min_size=0,
    max_size=12,
).map(
    lambda rows: [
        ServerView(f"s{i}", f"r{rack}", cap * GiB, int(used * cap * GiB), live, decom)
        for i, (rack, used, cap, live, decom) in enumerate(rows)
    ]
)


def eligible(s: ServerView, chunk: int, policy: PlacementPolicy) -> bool:
    return s.live and not s.decommissioning and s.used_bytes + chunk <= policy.max_utilization * s.capacity_bytes


# -- choose_replicas ----------------------------------------------------------------------------------------------


@PROPS
@given(servers_strategy, st.integers(1, 5), st.integers(0, 2**32), st.integers(0, 3))
def test_choose_replicas_properties(servers: list[ServerView], count: int, seed: int, choices: int) -> None:
    policy = PlacementPolicy(choices=choices)
    chosen = choose_replicas(servers, count, chunk_bytes=CHUNK, rng=random.Random(seed), policy=policy)
    ok = [s for s in servers if eligible(s, CHUNK, policy)]
    by_id = {s.server_id: s for s in servers}
    assert len(chosen) == len(set(chosen)) == min(count, len(ok))
    assert all(eligible(by_id[s], CHUNK, policy) for s in chosen)  # never dead, decommissioning or full
    racks = {s.rack for s in ok}
    assert len({by_id[s].rack for s in chosen}) == min(len(chosen), len(racks))  # distinct racks when possible
    again = choose_replicas(servers, count, chunk_bytes=CHUNK, rng=random.Random(seed), policy=policy)
    assert again == chosen  # deterministic given the random source


@PROPS
@given(servers_strategy, st.integers(0, 2**32))
def test_choose_replicas_respects_existing_racks_and_exclusions(servers: list[ServerView], seed: int) -> None:
    policy = PlacementPolicy()
    ok = [s for s in servers if eligible(s, CHUNK, policy)]
    existing = [s.server_id for s in ok[:1]]
    exclude = {s.server_id for s in ok[1:2]}
    chosen = choose_replicas(
        servers, 2, chunk_bytes=CHUNK, rng=random.Random(seed), existing=existing, exclude=exclude, policy=policy
    )
    assert not set(chosen) & (set(existing) | exclude)
    by_id = {s.server_id: s for s in servers}
    used_racks = {by_id[s].rack for s in existing}
    free_racks = {s.rack for s in ok if s.server_id not in exclude and s.server_id not in existing} - used_racks
    assert len({by_id[s].rack for s in chosen} - used_racks) == min(len(chosen), len(free_racks))


def test_least_utilized_with_choices_zero_and_preference_with_sampling() -> None:
    servers = [view(0, 0, 90), view(1, 0, 10), view(2, 0, 50)]
    assert choose_replicas(servers, 1, chunk_bytes=CHUNK, rng=random.Random(1), policy=PlacementPolicy(choices=0)) == (
        "s1",
    )
    rng = random.Random(3)
    counts = Counter(choose_replicas(servers, 1, chunk_bytes=CHUNK, rng=rng)[0] for _ in range(300))
    assert counts["s1"] > counts["s2"] > counts["s0"] == 0  # power of two choices: the fullest never wins


def test_new_empty_server_is_used_at_once_but_not_flooded() -> None:
    servers = [view(i, i, 60) for i in range(6)] + [view(6, 6, 0)]
    rng = random.Random(5)
    picks = [choose_replicas(servers, 3, chunk_bytes=CHUNK, rng=rng) for _ in range(200)]
    with_new = sum("s6" in p for p in picks)
    assert 60 < with_new < 200  # preferred (uniform would be ~86) but other servers still get chunks


def test_preferred_writer_machine_is_primary() -> None:
    servers = [view(i, i % 3, 10 * i) for i in range(6)]
    chosen = choose_replicas(servers, 3, chunk_bytes=CHUNK, rng=random.Random(0), preferred="s5")
    assert chosen[0] == "s5" and len({s[-1] for s in chosen}) == 3
    assert choose_replicas(servers, 3, chunk_bytes=CHUNK, rng=random.Random(0), preferred="nope")[0] != "nope"


def test_choose_replicas_bad_input_and_policy_problems() -> None:
    with pytest.raises(InvalidArgumentError):
        choose_replicas([], -1, chunk_bytes=1, rng=random.Random(0))
    assert PlacementPolicy(max_utilization=0, choices=-1).problems()
    assert spread([view(0, 0, 10), view(1, 0, 30), view(2, 0, 99, live=False)]) == pytest.approx(0.2)


# -- repair -------------------------------------------------------------------------------------------------------


needs_strategy = st.lists(
    st.tuples(st.integers(0, 3), st.integers(1, 4), st.integers(0, 3 * CHUNK)), min_size=0, max_size=15
)


def make_needs(rows: list[tuple[int, int, int]], servers: list[ServerView]) -> list[RepairNeed]:
    ids = [s.server_id for s in servers]
    needs = []
    for chunk_id, (good_count, replication, length) in enumerate(rows, start=1):
        good = tuple(ids[(chunk_id + k) % len(ids)] for k in range(min(good_count, len(ids), replication)))
        needs.append(RepairNeed(chunk_id, 1, length, replication, good, good))
    return needs


@PROPS
@given(servers_strategy.filter(bool), needs_strategy, st.integers(0, 6 * CHUNK), st.integers(0, 2**32))
def test_repair_plan_properties(
    servers: list[ServerView], rows: list[tuple[int, int, int]], budget: int, seed: int
) -> None:
    policy = PlacementPolicy(max_copies_per_server=2)
    needs = make_needs(rows, servers)
    in_flight = {servers[0].server_id: 1}
    plan = plan_repair(needs, servers, rng=random.Random(seed), budget_bytes=budget, in_flight=in_flight, policy=policy)
    by_chunk = {n.chunk_id: n for n in needs}
    by_id = {s.server_id: s for s in servers}
    # fewest remaining replicas first
    order = [len(by_chunk[t.chunk_id].good) for t in plan.copies]
    assert order == sorted(order)
    assert sum(t.length for t in plan.copies) <= budget
    load = Counter(in_flight)
    for t in plan.copies:
        need = by_chunk[t.chunk_id]
        assert t.source in need.good and t.target not in need.holders and t.reason is CopyReason.REPAIR
        assert by_id[t.source].live and eligible(by_id[t.target], 0, policy)
        load[t.source] += 1
        load[t.target] += 1
    assert all(n <= policy.max_copies_per_server for n in load.values())
    for chunk_id, count in Counter(t.chunk_id for t in plan.copies).items():
        need = by_chunk[chunk_id]
        assert count <= need.replication - len(need.good)
        assert len({t.target for t in plan.copies if t.chunk_id == chunk_id}) == count
    assert set(plan.lost) == {n.chunk_id for n in needs if not n.good}


def test_repair_order_and_throttle_stop_at_the_first_unaffordable_chunk() -> None:
    servers = [view(i, i) for i in range(6)]
    needs = [
        RepairNeed(1, 1, 10, 3, ("s0", "s1"), ("s0", "s1")),
        RepairNeed(2, 1, 10, 3, ("s2",), ("s2",)),
        RepairNeed(3, 1, 1000, 3, ("s3", "s4"), ("s3", "s4")),
        RepairNeed(4, 1, 10, 3, (), ("s5",)),
    ]
    plan = plan_repair(
        needs, servers, rng=random.Random(0), budget_bytes=1000, policy=PlacementPolicy(max_copies_per_server=9)
    )
    assert [t.chunk_id for t in plan.copies] == [2, 2, 1] and plan.lost == (4,) and plan.waiting == (3,)
    assert plan.copies[0].source == "s2" and {t.target for t in plan.copies[:2]}.isdisjoint({"s2"})


def test_repair_respects_per_server_copy_limit() -> None:
    servers = [view(i, i) for i in range(4)]
    needs = [RepairNeed(c, 1, 10, 2, ("s0",), ("s0",)) for c in range(1, 5)]
    plan = plan_repair(
        needs, servers, rng=random.Random(0), budget_bytes=10**9, policy=PlacementPolicy(max_copies_per_server=2)
    )
    assert len(plan.copies) == 2 and plan.waiting == (3, 4)


# -- balance ------------------------------------------------------------------------------------------------------


@PROPS
@given(
    st.lists(st.tuples(st.integers(0, 3), st.integers(0, 90)), min_size=2, max_size=8),
    st.lists(st.tuples(st.integers(0, 7), st.integers(0, 7), st.integers(1, 4)), max_size=30),
    st.floats(0, 0.3),
)
def test_balance_never_widens_the_spread(
    rows: list[tuple[int, int]], chunk_rows: list[tuple[int, int, int]], threshold: float
) -> None:
    servers = [view(i, rack, used, cap_gib=100) for i, (rack, used) in enumerate(rows)]
    n = len(servers)
    chunks: dict[int, ChunkBrief] = {}
    for chunk_id, (a, b, gib) in enumerate(chunk_rows, start=1):
        replicas = tuple(dict.fromkeys((f"s{a % n}", f"s{b % n}")))
        chunks[chunk_id] = ChunkBrief(chunk_id, 1, gib * GiB, replicas)
    movable = {s.server_id: [c for c in chunks.values() if s.server_id in c.replicas] for s in servers}
    policy = PlacementPolicy(balance_threshold=threshold, max_balance_moves=5, max_copies_per_server=3)
    moves = plan_balance(servers, movable, budget_bytes=10**15, policy=policy)
    assert len(moves) <= 5
    used = {s.server_id: s.used_bytes for s in servers}
    racks = {s.server_id: s.rack for s in servers}
    for move in moves:
        chunk = chunks[move.chunk_id]
        assert move.target not in chunk.replicas and move.drop == move.source and move.reason is CopyReason.BALANCE
        after = [s for s in chunk.replicas if s != move.source] + [move.target]
        assert len({racks[s] for s in after}) >= len({racks[s] for s in chunk.replicas})
        used[move.source] -= move.length
        used[move.target] += move.length
    assert len({m.chunk_id for m in moves}) == len(moves)
    after_views = [ServerView(s.server_id, s.rack, s.capacity_bytes, used[s.server_id]) for s in servers]
    assert spread(after_views) <= spread(servers) + 1e-12


def test_balance_moves_toward_a_new_server() -> None:
    servers = [view(0, 0, 80), view(1, 1, 80), view(2, 2, 0)]
    chunks = [ChunkBrief(c, 1, 5 * GiB, ("s0", "s1")) for c in range(1, 10)]
    movable = {"s0": chunks, "s1": chunks, "s2": []}
    moves = plan_balance(servers, movable, budget_bytes=10**15, policy=PlacementPolicy(max_copies_per_server=10))
    assert moves and all(m.target == "s2" for m in moves)
    assert plan_balance(servers, movable, budget_bytes=0) == ()  # no budget, no moves
    even = [view(0, 0, 50), view(1, 1, 52)]
    assert plan_balance(even, {"s0": chunks, "s1": chunks}, budget_bytes=10**15) == ()  # within the threshold


# -- decommission -------------------------------------------------------------------------------------------------


def test_decommission_copies_every_chunk_off_keeping_racks() -> None:
    servers = [view(0, 0, decommissioning=True), view(1, 1), view(2, 2), view(3, 0), view(4, 1)]
    chunks = [ChunkBrief(c, 2, 100, ("s0", "s1", "s2")) for c in range(1, 5)]
    plan = plan_decommission(
        "s0", chunks, servers, rng=random.Random(0), budget_bytes=10**9, policy=PlacementPolicy(max_copies_per_server=9)
    )
    assert [t.chunk_id for t in plan.copies] == [1, 2, 3, 4]
    assert all(t.drop == "s0" and t.target == "s3" and t.reason is CopyReason.DECOMMISSION for t in plan.copies)
    tight = plan_decommission("s0", chunks, servers, rng=random.Random(0), budget_bytes=250)
    assert len(tight.copies) == 2 and tight.waiting == (3, 4)
    nowhere = plan_decommission("s0", chunks, servers[:3], rng=random.Random(0), budget_bytes=10**9)
    assert nowhere.copies == () and nowhere.waiting == (1, 2, 3, 4)


# -- reads --------------------------------------------------------------------------------------------------------


def test_read_order_prefers_local_machine_then_rack_and_avoids_bad_copies() -> None:
    racks = {"a": "r1", "b": "r2", "c": "r2", "d": "r3"}
    assert read_order(("a", "b", "c", "d"), rack_of=racks, local_server="c", local_rack="r2") == ("c", "b", "a", "d")
    assert read_order(("a", "b", "c"), rack_of=racks, local_rack="r2", avoid={"b"}) == ("c", "a", "b")
    assert read_order(("a", "b"), rack_of=racks) == ("a", "b")
