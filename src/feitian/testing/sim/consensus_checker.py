"""Safety invariants of a simulated Raft cluster, checked as events happen (paper §5.2-§5.4, Figure 3).

* Election safety: at most one leader per term.
* Log matching: an entry identified by (index, term) has the same content and the same predecessor term in
  every log that persists it; by induction, logs agreeing on an entry agree on everything before it.
* Leader completeness: every committed entry is in the log of every leader of a later term (checked when a
  leader is elected and whenever an entry is newly known committed).
* State machine safety: replicas that applied index i did so with identical prefixes (hash-chain digests), and
  every replica's committed entry at i is the same.
* Durability of acknowledged writes: a write acknowledged to its client (applied on the proposer with the
  proposal's term) is the committed entry at its index forever.
* Linearizable ReadIndex: a read returns an index covering every write acknowledged, and every entry known
  committed anywhere, before the read started.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass, field

from feitian.consensus import Entry, MemoryStorage, Proposal, Raft, ReadState, Ready, Snapshot


class InvariantViolation(AssertionError):
    """A safety or liveness property of the simulated cluster broke."""


@dataclass(slots=True)
class PendingRead:
    node_id: int
    started_step: int
    # The largest index of any write acknowledged, or entry known committed, before the read started.
    must_cover: int
    index: int | None = None


@dataclass(slots=True)
class CheckerStats:
    elections: int = 0
    committed: int = 0
    proposals: int = 0
    acked: int = 0
    lost: int = 0
    reads_started: int = 0
    reads_done: int = 0
    snapshots_installed: int = 0


@dataclass
class Checker:
    # Yields (node_id, raft) for every replica that currently believes it leads.
    current_leaders: Callable[[], Iterator[tuple[int, Raft]]]
    step: int = 0
    stats: CheckerStats = field(default_factory=CheckerStats)
    leaders: dict[int, int] = field(default_factory=dict)  # term -> leader id
    entries: dict[tuple[int, int], tuple[int, bytes, int]] = field(default_factory=dict)
    committed: dict[int, tuple[int, int, bytes]] = field(default_factory=dict)  # index -> (term, kind, data)
    # index -> the lowest term some replica held when it learned the entry committed: it was committed in that
    # term or earlier, so every leader of a later term must hold it.
    commit_terms: dict[int, int] = field(default_factory=dict)
    digests: dict[int, bytes] = field(default_factory=dict)  # index -> state digest after applying it
    proposals: dict[tuple[int, int], tuple[Proposal, bytes]] = field(default_factory=dict)
    acked: dict[int, tuple[int, bytes]] = field(default_factory=dict)  # index -> (term, data)
    max_acked_index: int = 0
    max_committed_index: int = 0
    reads: dict[tuple[int, bytes], PendingRead] = field(default_factory=dict)  # (replica, context) -> read

    def fail(self, what: str) -> InvariantViolation:
        return InvariantViolation(f"step {self.step}: {what}")

    # -- elections ------------------------------------------------------------------------------------------

    def on_leader(self, node_id: int, raft: Raft) -> None:
        term = raft.term
        previous = self.leaders.setdefault(term, node_id)
        if previous != node_id:
            raise self.fail(f"election safety: term {term} has leaders {previous} and {node_id}")
        self.stats.elections += 1
        first = raft.log.first_index()
        last = raft.log.last_index()
        for index, (entry_term, _, _) in self.committed.items():
            if index < first:
                continue  # covered by the leader's snapshot (checked against `committed` when installed)
            if self.commit_terms.get(index, term) >= term:
                # Perhaps committed in this term or a later one: a replica paused as a candidate may win an
                # election of an older term after a newer term committed entries (it can commit nothing).
                continue
            if index > last or raft.log.term(index) != entry_term:
                raise self.fail(
                    f"leader completeness: leader {node_id} of term {term} lacks committed entry "
                    f"{index} (term {entry_term}); its term there is {raft.log.term(index)}, last index {last}"
                )

    # -- persistence ----------------------------------------------------------------------------------------

    def on_persisted(self, node_id: int, disk: MemoryStorage, rd: Ready, prev_commit: int) -> None:
        if rd.snapshot is not None:
            self._check_snapshot(node_id, rd.snapshot)
        for entry in rd.entries:
            prev_term = disk.term(entry.index - 1)
            record = (int(entry.kind), entry.data, prev_term)
            known = self.entries.setdefault((entry.index, entry.term), record)
            if known != record:
                raise self.fail(
                    f"log matching: replica {node_id} has entry {entry.index}/{entry.term} as {record}, "
                    f"another replica as {known}"
                )
        if rd.hard_state is not None and rd.hard_state.commit > prev_commit:
            lo = max(prev_commit + 1, disk.first_index())
            hi = rd.hard_state.commit + 1
            if lo < hi:
                for entry in disk.entries(lo, hi, 2**62):
                    self._record_committed(node_id, entry, rd.hard_state.term)

    def _check_snapshot(self, node_id: int, snapshot: Snapshot) -> None:
        self.stats.snapshots_installed += 1
        known = self.committed.get(snapshot.meta.index)
        if known is not None and known[0] != snapshot.meta.term:
            raise self.fail(
                f"snapshot at replica {node_id}: index {snapshot.meta.index} term {snapshot.meta.term}, "
                f"committed term {known[0]}"
            )

    def _record_committed(self, node_id: int, entry: Entry, commit_term: int | None) -> None:
        """``entry`` is committed, as learned in ``commit_term`` (so committed in that term or earlier): every
        leader of a later term must hold it, whenever it was elected (paper §5.4.3)."""
        record = (entry.term, int(entry.kind), entry.data)
        known = self.committed.setdefault(entry.index, record)
        if known != record:
            raise self.fail(
                f"state machine safety: replica {node_id} committed {record} at {entry.index}, "
                f"another replica committed {known}"
            )
        if known is record:
            self.stats.committed += 1
            self.max_committed_index = max(self.max_committed_index, entry.index)
        if commit_term is not None:
            self.commit_terms[entry.index] = min(commit_term, self.commit_terms.get(entry.index, commit_term))
            for leader_id, raft in self.current_leaders():
                if raft.term <= commit_term or entry.index < raft.log.first_index():
                    continue
                if raft.log.term(entry.index) != entry.term:
                    raise self.fail(
                        f"leader completeness: leader {leader_id} of term {raft.term} lacks entry "
                        f"{entry.index}/{entry.term} committed at replica {node_id}"
                    )
        acked = self.acked.get(entry.index)
        if acked is not None and acked != (entry.term, entry.data):
            raise self.fail(f"acknowledged write at {entry.index} replaced by {record} at replica {node_id}")

    # -- applying -------------------------------------------------------------------------------------------

    def on_applied(self, node_id: int, entry: Entry, digest: bytes) -> None:
        self._record_committed(node_id, entry, None)
        known = self.digests.setdefault(entry.index, digest)
        if known != digest:
            raise self.fail(f"state machine safety: replica {node_id} diverged at applied index {entry.index}")
        pending = self.proposals.pop((node_id, entry.index), None)
        if pending is not None:
            proposal, data = pending
            if entry.term == proposal.term:
                if entry.data != data:
                    raise self.fail(f"proposal {proposal} applied with other data at replica {node_id}")
                self.stats.acked += 1
                self.acked[entry.index] = (entry.term, data)
                self.max_acked_index = max(self.max_acked_index, entry.index)
            else:
                self.stats.lost += 1

    def on_snapshot_restored(self, node_id: int, snapshot: Snapshot, digest: bytes) -> None:
        index = snapshot.meta.index
        if snapshot.data:
            known = self.digests.setdefault(index, digest)
            if known != digest:
                raise self.fail(f"state machine safety: snapshot {index} installed at replica {node_id} diverges")
        # Proposals of this replica covered by the snapshot: outcome unknown to the client, forget them.
        for key in [k for k in self.proposals if k[0] == node_id and k[1] <= index]:
            del self.proposals[key]

    def check_acked_durable(self, node_id: int, raft: Raft) -> None:
        """At the end: every acknowledged write is in this caught-up member's log (or under its snapshot)."""
        first = raft.log.first_index()
        for index, (term, _) in self.acked.items():
            if index > raft.log.committed:
                raise self.fail(f"acknowledged write at {index} not committed on caught-up replica {node_id}")
            if index >= first and raft.log.term(index) != term:
                raise self.fail(f"acknowledged write {index}/{term} missing from replica {node_id}")

    # -- clients --------------------------------------------------------------------------------------------

    def on_proposed(self, node_id: int, proposal: Proposal, data: bytes) -> None:
        self.stats.proposals += 1
        self.proposals[(node_id, proposal.index)] = (proposal, data)

    def on_crash(self, node_id: int) -> None:
        for key in [k for k in self.proposals if k[0] == node_id]:
            del self.proposals[key]
        for read_key in [k for k in self.reads if k[0] == node_id]:
            del self.reads[read_key]

    def on_read_started(self, node_id: int, context: bytes) -> None:
        self.stats.reads_started += 1
        must_cover = max(self.max_acked_index, self.max_committed_index)
        self.reads[(node_id, context)] = PendingRead(node_id=node_id, started_step=self.step, must_cover=must_cover)

    def on_read_state(self, node_id: int, rs: ReadState, applied: int) -> None:
        read = self.reads.get((node_id, rs.context))
        if read is None or read.index is not None:
            return  # a duplicate, or a read dropped when its replica crashed
        read.index = rs.index
        self.maybe_complete_reads(node_id, applied)

    def maybe_complete_reads(self, node_id: int, applied: int) -> None:
        for key, read in list(self.reads.items()):
            if read.node_id != node_id or read.index is None or read.index > applied:
                continue
            del self.reads[key]
            self.stats.reads_done += 1
            if read.index < read.must_cover:
                raise self.fail(
                    f"linearizability: read {key[1]!r} started at step {read.started_step} on replica {node_id} "
                    f"got read index {read.index}, but index {read.must_cover} was committed (or acknowledged) "
                    "before it started"
                )
