"""Where replicas go: new chunks, repair, balance and decommission (PANGU-3, PANGU-5, PANGU-6).

Pure functions over :class:`ServerView` snapshots (built by :class:`~feitian.dfs.core.cluster_state.ClusterState`)
and an injected random source, so a plan is reproducible from a seed.

* :func:`choose_replicas` — distinct servers, on distinct racks whenever enough racks have eligible servers,
  never on a dead, decommissioning or full server; among the allowed ones it prefers low disk utilization by
  drawing ``policy.choices`` candidates and taking the least utilized ("power of k choices": a new, empty
  server is preferred but not flooded with every new chunk). ``choices=0`` always takes the least utilized.
* :func:`plan_repair` — under-replicated chunks, fewest remaining replicas first, each copy from a good replica
  to a new server, at most ``max_copies_per_server`` copies per server in flight and at most ``budget_bytes``
  copied per call (the caller's throttle).
* :func:`plan_balance` — bounded moves from the most to the least utilized servers; a move is planned only if
  afterwards the target is no more utilized than the source, so the spread (max - min utilization) never grows,
  and only if the chunk keeps as many distinct racks.
* :func:`plan_decommission` — a copy of every chunk on a leaving server, which is dropped once the copy exists.
* :func:`plan_spread` — for a chunk whose replicas share racks although another rack could take one (a rack
  that was down is back): a copy to a server on an unused rack, then the drop of a replica on a shared rack.
"""

from __future__ import annotations

import enum
from collections.abc import Collection, Iterable, Mapping, Sequence

import msgspec

from feitian.base.clock import RandomSource
from feitian.base.topology import distance, distinct_racks
from feitian.errors import InvalidArgumentError

__all__ = [
    "ChunkBrief",
    "CopyReason",
    "CopyTask",
    "PlacementPolicy",
    "RepairNeed",
    "RepairPlan",
    "ServerView",
    "choose_replicas",
    "plan_balance",
    "plan_decommission",
    "plan_repair",
    "plan_spread",
    "read_order",
    "spread",
]


class ServerView(msgspec.Struct, frozen=True):
    """One chunk server as placement sees it (registration from the namespace, usage and liveness from
    heartbeats)."""

    server_id: str
    rack: str
    capacity_bytes: int
    used_bytes: int
    live: bool = True
    decommissioning: bool = False

    @property
    def utilization(self) -> float:
        return self.used_bytes / self.capacity_bytes if self.capacity_bytes > 0 else 1.0


class PlacementPolicy(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    max_utilization: float = 0.95  # a server this full (after the new chunk) gets no new replicas
    choices: int = 2  # candidates drawn per pick; 0: always the least utilized
    max_copies_per_server: int = 2  # copies a server sends or receives at once (repair + balance + decommission)
    balance_threshold: float = 0.10  # balance only servers whose utilizations differ by more than this
    max_balance_moves: int = 16  # moves per plan_balance call

    def problems(self) -> list[str]:
        out = []
        if not 0 < self.max_utilization <= 1:
            out.append(f"max_utilization {self.max_utilization} must be in (0, 1]")
        if self.choices < 0 or self.max_copies_per_server < 1 or self.max_balance_moves < 0:
            out.append("choices >= 0, max_copies_per_server >= 1 and max_balance_moves >= 0 are required")
        if not 0 <= self.balance_threshold < 1:
            out.append(f"balance_threshold {self.balance_threshold} must be in [0, 1)")
        return out


class CopyReason(enum.StrEnum):
    REPAIR = "repair"
    BALANCE = "balance"
    DECOMMISSION = "decommission"
    SPREAD = "spread"  # a replica moved off a shared rack to a rack the chunk is not on


class CopyTask(msgspec.Struct, frozen=True):
    """Copy ``chunk_id`` at ``version`` (``length`` bytes) from ``source`` to ``target``; once the target has it,
    propose AddReplica, then RemoveReplica of ``drop`` if set (balance, decommission)."""

    chunk_id: int
    version: int
    length: int
    source: str
    target: str
    reason: CopyReason
    drop: str | None = None


class RepairNeed(msgspec.Struct, frozen=True):
    """A chunk with fewer good replicas than it needs. ``good``: live servers holding the current version.
    ``holders``: every server that has or is listed with the chunk (never a target)."""

    chunk_id: int
    version: int
    length: int
    replication: int
    good: tuple[str, ...]
    holders: tuple[str, ...]


class ChunkBrief(msgspec.Struct, frozen=True):
    """A copyable chunk for balance and decommission: its good replicas (including the server in question)."""

    chunk_id: int
    version: int
    length: int
    replicas: tuple[str, ...]


class RepairPlan(msgspec.Struct, frozen=True):
    copies: tuple[CopyTask, ...]
    lost: tuple[int, ...] = ()  # no good replica left: nothing to copy from (fsck reports them missing)
    waiting: tuple[int, ...] = ()  # not planned now: no source/target capacity or budget; retried next call


def spread(servers: Iterable[ServerView]) -> float:
    """Max minus min utilization over live servers that are not decommissioning (0 for fewer than two)."""
    values = [s.utilization for s in servers if s.live and not s.decommissioning]
    return max(values) - min(values) if len(values) > 1 else 0.0


class _Usage:
    """Projected usage: server views plus the bytes and copies already planned in this call."""

    def __init__(self, servers: Iterable[ServerView], in_flight: Mapping[str, int], policy: PlacementPolicy) -> None:
        self.views = {s.server_id: s for s in servers}
        self.extra: dict[str, int] = {}
        self.load = {s: in_flight.get(s, 0) for s in self.views}
        self.policy = policy

    def used(self, server_id: str) -> int:
        return self.views[server_id].used_bytes + self.extra.get(server_id, 0)

    def utilization(self, server_id: str, plus: int = 0) -> float:
        view = self.views[server_id]
        return (self.used(server_id) + plus) / view.capacity_bytes if view.capacity_bytes > 0 else 1.0

    def can_take(self, server_id: str, chunk_bytes: int) -> bool:
        view = self.views[server_id]
        return (
            view.live
            and not view.decommissioning
            and view.capacity_bytes > 0
            and self.used(server_id) + chunk_bytes <= self.policy.max_utilization * view.capacity_bytes
        )

    def has_slot(self, server_id: str) -> bool:
        return self.load.get(server_id, 0) < self.policy.max_copies_per_server

    def plan(self, task: CopyTask) -> CopyTask:
        self.load[task.source] = self.load.get(task.source, 0) + 1
        self.load[task.target] = self.load.get(task.target, 0) + 1
        self.extra[task.target] = self.extra.get(task.target, 0) + task.length
        if task.drop is not None:
            self.extra[task.drop] = self.extra.get(task.drop, 0) - task.length
        return task


def _pick(pool: list[str], usage: _Usage, chunk_bytes: int, rng: RandomSource) -> str:
    k = usage.policy.choices
    if k == 0 or len(pool) <= k:
        sample = pool
    else:
        sample, rest = [], list(pool)
        for _ in range(k):
            sample.append(rest.pop(rng.randrange(len(rest))))
    return min(sample, key=lambda s: (usage.utilization(s, chunk_bytes), s))


def _choose(
    usage: _Usage,
    count: int,
    chunk_bytes: int,
    rng: RandomSource,
    exclude: Collection[str],
    existing: Sequence[str],
    preferred: str | None,
    need_slot: bool,
    strict_racks: bool = False,
) -> list[str]:
    """``strict_racks``: if a server on a rack not yet used could take the chunk but has no copy slot free, choose
    nothing (wait for the slot) rather than a server on a used rack."""
    possible = sorted(
        s for s in usage.views if s not in exclude and s not in existing and usage.can_take(s, chunk_bytes)
    )
    candidates = [s for s in possible if not need_slot or usage.has_slot(s)]
    racks = {usage.views[s].rack for s in existing if s in usage.views}
    if strict_racks and any(usage.views[s].rack not in racks for s in possible):
        candidates = [s for s in candidates if usage.views[s].rack not in racks]
    chosen: list[str] = []
    if preferred is not None and preferred in candidates and count > 0:
        chosen.append(preferred)
        racks.add(usage.views[preferred].rack)
        candidates.remove(preferred)
    while len(chosen) < count and candidates:
        fresh = [s for s in candidates if usage.views[s].rack not in racks]
        pick = _pick(fresh or candidates, usage, chunk_bytes, rng)
        chosen.append(pick)
        racks.add(usage.views[pick].rack)
        candidates.remove(pick)
    return chosen


def choose_replicas(
    servers: Iterable[ServerView],
    count: int,
    *,
    chunk_bytes: int,
    rng: RandomSource,
    policy: PlacementPolicy | None = None,
    exclude: Collection[str] = (),
    existing: Sequence[str] = (),
    preferred: str | None = None,
) -> tuple[str, ...]:
    """Up to ``count`` servers for a chunk, primary first (``preferred`` — the writer's own machine — if it is
    eligible). Fewer are returned when fewer servers are eligible; the caller decides whether that is enough
    (a file's ``min_write_replicas``). ``existing`` replicas' racks count as used."""
    if count < 0 or chunk_bytes < 0:
        raise InvalidArgumentError(f"choose replicas: count {count} and chunk_bytes {chunk_bytes} must be >= 0")
    usage = _Usage(servers, {}, policy or PlacementPolicy())
    return tuple(_choose(usage, count, chunk_bytes, rng, exclude, existing, preferred, need_slot=False))


def _source(candidates: Iterable[str], usage: _Usage) -> str | None:
    usable = [s for s in candidates if s in usage.views and usage.views[s].live and usage.has_slot(s)]
    return min(usable, key=lambda s: (usage.load.get(s, 0), usage.utilization(s), s)) if usable else None


def plan_repair(
    needs: Iterable[RepairNeed],
    servers: Iterable[ServerView],
    *,
    rng: RandomSource,
    budget_bytes: int,
    in_flight: Mapping[str, int] | None = None,
    policy: PlacementPolicy | None = None,
) -> RepairPlan:
    """Copies for under-replicated chunks, fewest good replicas first (then larger deficit, then chunk id).

    Planning stops at the first chunk the remaining ``budget_bytes`` cannot pay for, so a later (healthier)
    chunk never overtakes it; the caller's throttle must allow at least one whole chunk per call.
    """
    usage = _Usage(servers, in_flight or {}, policy or PlacementPolicy())
    ordered = sorted(needs, key=lambda n: (len(n.good), len(n.good) - n.replication, n.chunk_id))
    copies: list[CopyTask] = []
    lost: list[int] = []
    waiting: list[int] = []
    budget = budget_bytes
    for index, need in enumerate(ordered):
        if not need.good:
            lost.append(need.chunk_id)
            continue
        if need.length > budget:
            waiting.extend(n.chunk_id for n in ordered[index:] if n.good)
            break
        have = list(need.good)
        for _ in range(need.replication - len(need.good)):
            if need.length > budget:
                waiting.append(need.chunk_id)
                break
            source = _source(need.good, usage)
            urgent = len(have) <= 1  # one copy left: any rack now, diversity later
            targets = _choose(usage, 1, need.length, rng, need.holders, have, None, True, strict_racks=not urgent)
            if source is None or not targets:
                waiting.append(need.chunk_id)
                break
            copies.append(
                usage.plan(CopyTask(need.chunk_id, need.version, need.length, source, targets[0], CopyReason.REPAIR))
            )
            have.append(targets[0])
            budget -= need.length
    return RepairPlan(tuple(copies), tuple(lost), tuple(waiting))


def _rack_count(usage: _Usage, replicas: Iterable[str]) -> int:
    replicas = list(replicas)
    return distinct_racks(replicas, {s: usage.views[s].rack for s in replicas if s in usage.views})


def plan_balance(
    servers: Iterable[ServerView],
    movable: Mapping[str, Sequence[ChunkBrief]],
    *,
    budget_bytes: int,
    in_flight: Mapping[str, int] | None = None,
    policy: PlacementPolicy | None = None,
) -> tuple[CopyTask, ...]:
    """Moves (copy, then drop the source replica) from the most to the least utilized servers.

    ``movable[server]`` lists copyable chunks on that server (quiescent, no copy in flight). Among live,
    non-decommissioning servers, a move from S to T is planned only when their utilizations differ by more than
    ``balance_threshold``, T does not hold the chunk, T can take it, the chunk keeps at least as many racks,
    and T's utilization after the move is at most S's — so no move widens the spread.
    """
    usage = _Usage(servers, in_flight or {}, policy or PlacementPolicy())
    pol = usage.policy
    members = sorted(s for s, v in usage.views.items() if v.live and not v.decommissioning)
    moves: list[CopyTask] = []
    budget = budget_bytes
    exhausted: set[str] = set()
    while len(moves) < pol.max_balance_moves:
        sources = [s for s in members if s not in exhausted and usage.has_slot(s) and movable.get(s)]
        if not sources or len(members) < 2:
            break
        source = max(sources, key=lambda s: (usage.utilization(s), s))
        task = _balance_move(usage, source, members, movable[source], budget, moves)
        if task is None:
            exhausted.add(source)
            continue
        moves.append(usage.plan(task))
        budget -= task.length
    return tuple(moves)


def _balance_move(
    usage: _Usage, source: str, members: list[str], chunks: Sequence[ChunkBrief], budget: int, planned: list[CopyTask]
) -> CopyTask | None:
    busy = {t.chunk_id for t in planned}
    targets = sorted((s for s in members if s != source and usage.has_slot(s)), key=lambda s: (usage.utilization(s), s))
    for target in targets:
        if usage.utilization(source) - usage.utilization(target) <= usage.policy.balance_threshold:
            return None  # targets are sorted: no later one is further below
        for chunk in sorted(chunks, key=lambda c: (-c.length, c.chunk_id)):
            if chunk.chunk_id in busy or target in chunk.replicas or source not in chunk.replicas:
                continue
            if chunk.length > budget or not usage.can_take(target, chunk.length):
                continue
            if usage.utilization(target, chunk.length) > usage.utilization(source, -chunk.length):
                continue
            others = [s for s in chunk.replicas if s != source]
            if _rack_count(usage, [*others, target]) < _rack_count(usage, chunk.replicas):
                continue
            return CopyTask(chunk.chunk_id, chunk.version, chunk.length, source, target, CopyReason.BALANCE, source)
    return None


def plan_decommission(
    server_id: str,
    chunks: Iterable[ChunkBrief],
    servers: Iterable[ServerView],
    *,
    rng: RandomSource,
    budget_bytes: int,
    in_flight: Mapping[str, int] | None = None,
    policy: PlacementPolicy | None = None,
) -> RepairPlan:
    """A copy of each chunk on ``server_id`` to another server, keeping rack diversity, after which the leaving
    server's replica is dropped. Chunks with fewest other replicas go first. The source is the least busy of
    the chunk's live replicas, the leaving server included."""
    usage = _Usage(servers, in_flight or {}, policy or PlacementPolicy())
    ordered = sorted(chunks, key=lambda c: (len(c.replicas), c.chunk_id))
    copies: list[CopyTask] = []
    waiting: list[int] = []
    budget = budget_bytes
    for index, chunk in enumerate(ordered):
        if chunk.length > budget:
            waiting.extend(c.chunk_id for c in ordered[index:])
            break
        others = [s for s in chunk.replicas if s != server_id]
        source = _source(chunk.replicas, usage)
        targets = _choose(usage, 1, chunk.length, rng, chunk.replicas, others, None, True, strict_racks=True)
        if source is None or not targets:
            waiting.append(chunk.chunk_id)
            continue
        task = CopyTask(
            chunk.chunk_id, chunk.version, chunk.length, source, targets[0], CopyReason.DECOMMISSION, server_id
        )
        copies.append(usage.plan(task))
        budget -= chunk.length
    return RepairPlan(tuple(copies), (), tuple(waiting))


def plan_spread(
    chunks: Iterable[ChunkBrief],
    servers: Iterable[ServerView],
    *,
    rng: RandomSource,
    budget_bytes: int,
    in_flight: Mapping[str, int] | None = None,
    policy: PlacementPolicy | None = None,
) -> tuple[CopyTask, ...]:
    """Moves that put a replica of each chunk on a rack it is not on yet, dropping one from a rack holding two or
    more of its replicas (the most utilized such server). ``chunks``: chunks whose good replicas are on fewer
    racks than they could be. A chunk with no server on a new rack that can take it (and has a copy slot) waits;
    planning stops at the first chunk the budget cannot pay for."""
    usage = _Usage(servers, in_flight or {}, policy or PlacementPolicy())
    moves: list[CopyTask] = []
    budget = budget_bytes
    for chunk in sorted(chunks, key=lambda c: c.chunk_id):
        if chunk.length > budget:
            break
        racks: dict[str, list[str]] = {}
        for server_id in chunk.replicas:
            racks.setdefault(usage.views[server_id].rack if server_id in usage.views else f"?{server_id}", []).append(
                server_id
            )
        shared = [s for members in racks.values() if len(members) > 1 for s in members]
        if not shared:
            continue
        drop = max(shared, key=lambda s: (usage.utilization(s) if s in usage.views else 0.0, s))
        keep = [s for s in chunk.replicas if s != drop]
        source = _source(chunk.replicas, usage)
        targets = _choose(usage, 1, chunk.length, rng, chunk.replicas, keep, None, True, strict_racks=True)
        if source is None or not targets or usage.views[targets[0]].rack in racks:
            continue  # no new rack can take it now
        task = CopyTask(chunk.chunk_id, chunk.version, chunk.length, source, targets[0], CopyReason.SPREAD, drop)
        moves.append(usage.plan(task))
        budget -= chunk.length
    return tuple(moves)


def read_order(
    replicas: Sequence[str],
    *,
    rack_of: Mapping[str, str],
    local_server: str | None = None,
    local_rack: str | None = None,
    avoid: Collection[str] = (),
) -> tuple[str, ...]:
    """The order a reader tries replicas: its own machine, then its rack, then the rest (each group in the
    given order); replicas in ``avoid`` (failed or reported corrupt by this reader) go last."""

    def rank(item: tuple[int, str]) -> tuple[bool, int, int]:
        index, server_id = item
        place = distance(server_id, rack_of, local_machine=local_server, local_rack=local_rack)
        return (server_id in avoid, place, index)

    return tuple(server_id for _, server_id in sorted(enumerate(replicas), key=rank))
