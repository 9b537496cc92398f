"""A seeded simulation of a replicated *service*: the consensus simulation (:mod:`.consensus`) with a service's
state machine on every replica, a workload of that service's client commands, and the service's invariants.

Every replica runs the service state machine on the real driver's Ready cycle (:mod:`feitian.replica.cycle`):
it applies committed entries through :func:`~feitian.replica.cycle.apply_entry`, snapshots with the log
(``snapshot()`` next to the hash chain), and after a crash restarts from what its disk holds (``restore`` of
the last snapshot, then the committed log). On top of the consensus faults (loss, delay, duplication,
partitions, pauses, crashes mid-Ready, membership changes, leader transfers), replicas' clocks jump forward and
back (:attr:`ServiceSimulation.clock_offsets_ns`): leader-side time goes into commands (DFS ``now_ns``, lease
expiries) and into Nuwa's session expiry.

Checked after every applied entry, on every replica: the consensus invariants, a digest of the service state
equal on every replica that applied index i (and on every replica that installed a snapshot at i), and the
service's own invariants (:class:`ServiceModel.check_applied`). A :class:`ServiceModel` is a service's
workload and invariants: :mod:`.service_coord` (Nuwa) and :mod:`.service_dfs` (the Pangu master).
"""

from __future__ import annotations

import hashlib
import random
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol

from feitian.consensus import Entry, Role, Snapshot
from feitian.errors import InvalidArgumentError, NotLeaderError, UnavailableError
from feitian.replica import StateMachine
from feitian.testing.sim import service_mutants
from feitian.testing.sim.consensus import ConsensusSimulation, SimOptions, SimResult
from feitian.testing.sim.consensus_checker import InvariantViolation
from feitian.testing.sim.consensus_node import SimNode

TICK_NS = 100_000_000  # one simulated tick is 100 ms of every replica's clock (election: 1-2 s)
MAX_CLOCK_JUMP_NS = 30_000_000_000


class Lost:
    """The outcome of a proposal that did not apply with its term, or whose replica crashed first."""

    def __repr__(self) -> str:
        return "LOST"


LOST = Lost()

OnResult = Callable[[Any], None]


class ServiceModel(Protocol):
    """A service under simulation: its state machine, its clients and leader duties, its invariants."""

    name: str

    def new_machine(self) -> StateMachine: ...

    def act(self, sim: ServiceSimulation) -> None:
        """Once per tick while faults run: clients issue commands (``sim.submit``), the leader its duties."""
        ...

    def check_applied(self, sim: ServiceSimulation, node: SimNode, entry: Entry) -> None:
        """After ``entry`` applied on ``node``: raise InvariantViolation if the service state is wrong."""
        ...

    def on_restored(self, sim: ServiceSimulation, node: SimNode) -> None:
        """``node``'s service state was replaced (a restart, or a snapshot from the leader)."""
        ...

    def stats(self) -> dict[str, int]: ...


@dataclass(slots=True)
class _Pending:
    term: int
    on_result: OnResult


class ServiceSimulation(ConsensusSimulation):
    def __init__(self, options: SimOptions, model: ServiceModel) -> None:
        self.model = model
        self.clock_offsets_ns: dict[int, int] = {}
        self.clock_jumps = 0
        self.service_digests: dict[int, bytes] = {}
        self.pending: dict[tuple[int, int], _Pending] = {}
        self.answers: deque[tuple[OnResult, Any]] = deque()  # answers waiting for the current cycle to end
        self.answering = False
        self.service_applied = 0
        super().__init__(options)
        self.clock_rng = random.Random(self.rng.getrandbits(64))
        self.clock_jump_rate = self.clock_rng.choice([0.0, 0.005, 0.02])

    def run(self) -> SimResult:
        return self._run()  # a service mutant is applied by the caller (run_service_seed)

    def _make_node(self, node_id: int) -> SimNode:
        node = super()._make_node(node_id)
        node.service_factory = self.model.new_machine
        node.restored = lambda n: self.model.on_restored(self, n)
        return node

    # -- time --------------------------------------------------------------------------------------------------

    def clock_ns(self, node_id: int) -> int:
        """Replica ``node_id``'s wall clock: simulated time plus its drift (jumps forward and back)."""
        return self.now * TICK_NS + self.clock_offsets_ns.get(node_id, 0)

    def _faults(self) -> None:
        super()._faults()
        if self.clock_rng.random() < self.clock_jump_rate:
            node_id = self.clock_rng.choice(sorted(self.nodes))
            jump = self.clock_rng.randint(-MAX_CLOCK_JUMP_NS, MAX_CLOCK_JUMP_NS)
            self.clock_offsets_ns[node_id] = self.clock_offsets_ns.get(node_id, 0) + jump
            self.clock_jumps += 1
            self.log(f"replica {node_id}'s clock jumps {jump / 1e9:+.1f}s")

    # -- clients -----------------------------------------------------------------------------------------------

    def _propose(self) -> None:
        """The consensus workload's writes are replaced by the service's (``ServiceModel.act``)."""

    def _step(self) -> None:
        if self.chaos:
            self.model.act(self)
        super()._step()

    def leader(self) -> SimNode | None:
        return self._leader()

    def reachable(self) -> list[SimNode]:
        return self._up_nodes()

    def submit(self, node: SimNode, data: bytes, on_result: OnResult) -> bool:
        """Propose ``data`` at ``node`` (following one leader hint, like a client); ``on_result`` later gets the
        service's result when the entry applies there with its term, or :data:`LOST`. False: not proposed."""
        if not self.chaos:
            return False  # the liveness check at the end runs without client load
        for _ in range(2):
            if node.raw is None:
                return False
            try:
                proposal = node.raw.propose(data)
            except NotLeaderError as exc:
                hint = exc.fields.get("leader_hint")
                if hint is None or hint not in self.nodes or not self.nodes[hint].up:
                    return False
                node = self.nodes[hint]
                continue
            except UnavailableError:
                return False
            self.checker.on_proposed(node.node_id, proposal, data)
            self.pending[(node.node_id, proposal.index)] = _Pending(proposal.term, on_result)
            self._drain(node)
            return True
        return False

    def is_leader(self, node: SimNode) -> bool:
        return node.raw is not None and node.raw.role is Role.LEADER and node.node_id not in self.paused_until

    # -- observing the Ready cycle -----------------------------------------------------------------------------

    def _applied(self, node: SimNode, entry: Entry) -> None:
        super()._applied(node, entry)
        if node.service is None:
            return
        self.service_applied += 1
        digest = hashlib.blake2b(node.service.snapshot(), digest_size=16).digest()
        known = self.service_digests.setdefault(entry.index, digest)
        if known != digest:
            raise InvariantViolation(
                f"{self.model.name}: replica {node.node_id}'s state after index {entry.index} differs from "
                "another replica's (a nondeterministic apply?)"
            )
        self.model.check_applied(self, node, entry)
        pending = self.pending.pop((node.node_id, entry.index), None)
        if pending is not None:
            self.answers.append((pending.on_result, node.last_result if pending.term == entry.term else LOST))

    def _snapshot_restored(self, node: SimNode, snapshot: Snapshot) -> None:
        super()._snapshot_restored(node, snapshot)
        if node.service is not None and snapshot.data:
            digest = hashlib.blake2b(node.service.snapshot(), digest_size=16).digest()
            known = self.service_digests.setdefault(snapshot.meta.index, digest)
            if known != digest:
                raise InvariantViolation(
                    f"{self.model.name}: the snapshot at {snapshot.meta.index} installed on replica {node.node_id} "
                    "differs from the state other replicas applied there"
                )
        self._forget_pending(node.node_id, upto=snapshot.meta.index)

    def _on_crash(self, node: SimNode) -> None:
        super()._on_crash(node)
        self._forget_pending(node.node_id)

    def _forget_pending(self, node_id: int, upto: int | None = None) -> None:
        for key in sorted(self.pending):
            if key[0] == node_id and (upto is None or key[1] <= upto):
                self.answers.append((self.pending.pop(key).on_result, LOST))

    def _drain(self, node: SimNode) -> None:
        super()._drain(node)
        self._answer()

    def _answer(self) -> None:
        """Deliver answers once the Ready cycle that produced them is over (a client may propose again from its
        callback, which runs another cycle)."""
        if self.answering:
            return
        self.answering = True
        try:
            while self.answers:
                on_result, result = self.answers.popleft()
                on_result(result)
        finally:
            self.answering = False

    def _result(self, ok: bool, error: str | None) -> SimResult:
        result = super()._result(ok, error)
        result.stats["service"] = self.model.name
        result.stats["service_applied"] = self.service_applied
        result.stats["clock_jumps"] = self.clock_jumps
        result.stats.update(self.model.stats())
        return result


SERVICES = ("coord", "dfs")


def run_service_seed(
    service: str,
    seed: int,
    *,
    nodes: int = 3,
    steps: int = 600,
    trace: bool = False,
    mutant: str | None = None,
) -> SimResult:
    """One seeded run of ``service`` ("coord": Nuwa, "dfs": the Pangu master) with faults; see the module doc."""
    from feitian.testing.sim.service_coord import CoordModel
    from feitian.testing.sim.service_dfs import DfsModel

    options = SimOptions(seed=seed, nodes=nodes, steps=steps, trace=trace, mutant=mutant, service=service)
    model_rng = random.Random(seed ^ 0x5E4F1CE)
    model: ServiceModel
    if service == "coord":
        model = CoordModel(model_rng)
    elif service == "dfs":
        model = DfsModel(model_rng)
    else:
        raise InvalidArgumentError(f"simulation: unknown service {service!r}; known: {', '.join(SERVICES)}")
    with service_mutants.applied(service, mutant):
        return ServiceSimulation(options, model).run()
