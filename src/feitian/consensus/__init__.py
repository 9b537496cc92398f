"""feitian.consensus — a pure Raft core in the shape of etcd-io/raft (NUWA-1).

One :class:`RawNode` per replica. It does no I/O, reads no clock and owns no randomness: the driver feeds it
ticks and messages and carries out what it returns. Everything here is synchronous and deterministic given the
injected ``rand`` (``random.Random(seed)`` will do), so whole clusters run in one process under simulation
(:mod:`feitian.testing.sim`).

Creating a replica
------------------
A founding member of a new cluster persists :func:`bootstrap` (a snapshot at index 1 holding the first
membership, plus its hard state) into its storage; a replica added later starts with empty storage and
receives a snapshot or the log from the leader once a conf change adds it. Then::

    node = RawNode(Config(id=1), storage, random.Random())

A restarted replica is created the same way over its persisted storage.

Inputs
------
* ``tick()`` every tick interval (elections after ``election_tick`` ticks without a leader, heartbeats every
  ``heartbeat_tick``);
* ``step(message)`` for every message received from a peer (:mod:`~feitian.consensus.messages`; msgpack with
  :func:`encode_message`/:func:`decode_message`). Messages may be lost, duplicated, delayed or reordered;
* ``propose(data) -> Proposal(index, term)``, ``propose_conf_change(ConfChange)``, ``transfer_leader(id)``:
  leader only; other replicas raise :class:`~feitian.errors.NotLeaderError` with ``leader_hint`` (proposals
  are *not* forwarded, so the client knows exactly where its request went). Past
  ``max_uncommitted_size_bytes`` proposals raise :class:`~feitian.errors.OverloadedError`;
* ``read_index(context)``: a linearizable read, on any replica (followers forward it to the leader).

The Ready / advance cycle
-------------------------
After any input, ``ready()`` returns a :class:`Ready` (or None). The driver must, in order:

1. **persist** ``ready.snapshot`` (if any; it replaces the whole log), append ``ready.entries`` (an entry at an
   existing index replaces that entry and all after it) and save ``ready.hard_state`` (if any), durably;
2. **send** ``ready.messages`` — never before step 1: they promise what was just persisted (a vote, an
   acknowledged entry). Exception (thesis §10.2.1): when :func:`may_send_before_persist` says so, a leader
   sends first and persists meanwhile; it counts its own entries only once ``advance`` reports them durable;
3. **apply** ``ready.committed_entries`` in order (restore the state machine from ``ready.snapshot`` first).
   ``NOOP`` entries carry nothing; ``CONF_CHANGE`` entries carry a :class:`ConfChange` the core applies itself;
4. serve each ``ReadState(index, context)`` in ``ready.read_states`` once the state machine has applied
   ``index``; report ``ready.soft_state`` changes (new leader, role);
5. call ``advance(ready)``. Only then may ``ready()`` be called again (inputs may be stepped in between).

A crash anywhere in this cycle is safe as long as storage holds exactly what step 1 wrote.

Applied index, snapshots and compaction
---------------------------------------
``advance`` moves ``applied_index`` to the last committed entry handed out (or to the snapshot's index) and
applies membership changes found among them; ``conf_state`` is then the membership as of ``applied_index``.
To compact, after ``advance`` the application serialises its state machine and records it as a snapshot at
``applied_index`` with ``conf_state`` (``MemoryStorage.create_snapshot``), then drops entries up to an index
at or below it (``compact``), keeping a tail for slow followers. Followers behind the compacted log receive
``InstallSnapshot`` and see it in ``ready.snapshot``. On restart the state machine is rebuilt from the
storage's snapshot and the core hands out the committed entries after it again, unless ``applied_index`` is
passed to the constructor (a state machine that persists itself).

Storage
-------
:class:`Storage` is the small read interface the core uses (``initial_state``, ``first_index``,
``last_index``, ``term``, ``entries``, ``snapshot``); see :mod:`feitian.consensus.storage` for the contract and
:class:`MemoryStorage` for the reference implementation with the write methods a driver calls.

Membership
----------
``propose_conf_change(ConfChange(...))`` adds voters or learners, promotes, demotes or removes replicas: one
voter at a time directly, anything larger through a joint configuration (left automatically, or by proposing
``ConfChange()`` for ``JOINT_EXPLICIT``). One change at a time, and only once the leader has committed an
entry of its term. A leader whose own removal or demotion is in its log accepts no more proposals
(NotLeaderError) and, once the change applies, steps down and tells a caught-up voter to campaign.

Guarantees
----------
Leader election with pre-vote and check-quorum; log replication with pipelining, size-bounded batches, a
bounded in-flight window per follower and fast backtracking; snapshots; joint-consensus membership changes
with learners; leader transfer; ReadIndex reads confirmed by a heartbeat round (no lease reads).
"""

from typing import TYPE_CHECKING

from feitian.base.lazy import lazy_attributes
from feitian.consensus.config import Config, RandomSource
from feitian.consensus.leader import Proposal
from feitian.consensus.messages import (
    AppendEntries,
    AppendEntriesReply,
    Heartbeat,
    HeartbeatReply,
    InstallSnapshot,
    Message,
    ReadIndex,
    ReadIndexReply,
    RequestVote,
    RequestVoteReply,
    TimeoutNow,
    decode_message,
    encode_message,
)
from feitian.consensus.progress import ProgressState
from feitian.consensus.rawnode import ProgressStatus, RawNode, Ready, Status, may_send_before_persist
from feitian.consensus.read_only import ReadState
from feitian.consensus.role import Role, SoftState
from feitian.consensus.storage import (
    LogCompactedError,
    LogUnavailableError,
    MemoryStorage,
    Storage,
    bootstrap,
    entry_size_bytes,
)
from feitian.consensus.types import (
    ConfChange,
    ConfChangeSingle,
    ConfChangeTransition,
    ConfChangeType,
    ConfState,
    Entry,
    EntryKind,
    HardState,
    Snapshot,
    SnapshotMeta,
)

if TYPE_CHECKING:
    from feitian.consensus.quorum import VoteResult
    from feitian.consensus.raft import Raft
    from feitian.consensus.read_only import ReadIndexStatus, VoteFn

# Exported on first use, for other components (they import only through this root: ARCHITECTURE.md, Layers).
_LAZY = {
    "Raft": "feitian.consensus.raft",
    "ReadIndexStatus": "feitian.consensus.read_only",
    "VoteFn": "feitian.consensus.read_only",
    "VoteResult": "feitian.consensus.quorum",
}


__getattr__ = lazy_attributes(__name__, _LAZY)


__all__ = [
    "AppendEntries",
    "AppendEntriesReply",
    "ConfChange",
    "ConfChangeSingle",
    "ConfChangeTransition",
    "ConfChangeType",
    "ConfState",
    "Config",
    "Entry",
    "EntryKind",
    "HardState",
    "Heartbeat",
    "HeartbeatReply",
    "InstallSnapshot",
    "LogCompactedError",
    "LogUnavailableError",
    "MemoryStorage",
    "Message",
    "ProgressState",
    "ProgressStatus",
    "Proposal",
    "Raft",
    "RandomSource",
    "RawNode",
    "ReadIndex",
    "ReadIndexReply",
    "ReadIndexStatus",
    "ReadState",
    "Ready",
    "RequestVote",
    "RequestVoteReply",
    "Role",
    "Snapshot",
    "SnapshotMeta",
    "SoftState",
    "Status",
    "Storage",
    "TimeoutNow",
    "VoteFn",
    "VoteResult",
    "bootstrap",
    "decode_message",
    "encode_message",
    "entry_size_bytes",
    "may_send_before_persist",
]
