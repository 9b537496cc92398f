"""Wire messages between replicas (paper Figure 2, §7; thesis §3.10, §6.4, §9.6).

Every message carries ``from_id``, ``to_id`` and ``term`` (the sender's term, except vote replies, which echo
the term voted in). The driver delivers a message to the replica named by ``to_id`` with ``RawNode.step``;
delivery may lose, duplicate, delay and reorder messages — the core copes with all four. Encode with
:func:`encode_message` / :func:`decode_message` (msgpack, tagged union).
"""

from __future__ import annotations

import msgspec

from feitian.consensus.types import Entry, Snapshot
from feitian.errors import ProtocolError


class RequestVote(msgspec.Struct, frozen=True, tag=True):
    """A candidate asks for a vote (§5.2). ``pre_vote``: would you vote for me at ``term``? (thesis §9.6)

    For a pre-vote, ``term`` is the candidate's term + 1 and nobody changes term. ``leader_transfer`` marks the
    election a TimeoutNow started: voters then ignore their check-quorum lease (thesis §3.10).
    """

    from_id: int
    to_id: int
    term: int
    last_log_index: int
    last_log_term: int
    pre_vote: bool = False
    leader_transfer: bool = False


class RequestVoteReply(msgspec.Struct, frozen=True, tag=True):
    """A vote (or pre-vote) granted or refused. A refusal carries the voter's commit index and that entry's term:
    a candidate whose log holds the same entry learns that everything up to it is committed (Log Matching,
    §5.3). Without it a candidate that lost its unsynced commit index can stay in a configuration that needs
    the vote of a replica which already applied the next one and, a learner there, never campaigns itself."""

    from_id: int
    to_id: int
    term: int
    granted: bool
    pre_vote: bool = False
    commit: int = 0
    commit_term: int = 0


class AppendEntries(msgspec.Struct, frozen=True, tag=True):
    """Replicate ``entries`` after ``(prev_log_index, prev_log_term)``; ``commit`` is the leader's commit (§5.3).

    ``quiet``: a commit notice — no entries, sent when the commit index moved to a follower that has been sent
    everything. It is answered only by a rejection (the follower's log does not match at ``prev_log_index``);
    an acceptance would tell the leader nothing new. A lost notice costs time only: the next AppendEntries or
    heartbeat carries the commit index again."""

    from_id: int
    to_id: int
    term: int
    prev_log_index: int
    prev_log_term: int
    entries: tuple[Entry, ...] = ()
    commit: int = 0
    quiet: bool = False


class AppendEntriesReply(msgspec.Struct, frozen=True, tag=True):
    """Answer to AppendEntries and InstallSnapshot.

    Accepted (``reject`` false): the follower's log matches the leader's up to ``index``. Rejected: the
    entry at ``index`` (the request's ``prev_log_index``) did not match; ``hint_index``/``hint_term`` is the
    follower's last entry at or below ``index`` whose term is at most the request's ``prev_log_term``, so the
    leader can skip a whole divergent term in one round trip.
    """

    from_id: int
    to_id: int
    term: int
    index: int = 0
    reject: bool = False
    hint_index: int = 0
    hint_term: int = 0


class Heartbeat(msgspec.Struct, frozen=True, tag=True):
    """Leader liveness (§5.2). ``commit`` is at most what the follower is known to hold. ``context`` carries the
    newest pending ReadIndex request so the reply confirms leadership for it (thesis §6.4)."""

    from_id: int
    to_id: int
    term: int
    commit: int = 0
    context: bytes = b""


class HeartbeatReply(msgspec.Struct, frozen=True, tag=True):
    from_id: int
    to_id: int
    term: int
    context: bytes = b""


class InstallSnapshot(msgspec.Struct, frozen=True, tag=True):
    """The leader's snapshot, for a follower whose next entry was compacted (§7). Answered by
    AppendEntriesReply with the follower's new last index."""

    from_id: int
    to_id: int
    term: int
    snapshot: Snapshot


class TimeoutNow(msgspec.Struct, frozen=True, tag=True):
    """Leader transfer: start an election now, skipping pre-vote (thesis §3.10)."""

    from_id: int
    to_id: int
    term: int


class ReadIndex(msgspec.Struct, frozen=True, tag=True):
    """A follower forwards a linearizable read to its leader (thesis §6.4); ``context`` identifies it."""

    from_id: int
    to_id: int
    term: int
    context: bytes


class ReadIndexReply(msgspec.Struct, frozen=True, tag=True):
    """The read ``context`` may be served once the follower has applied up to ``index``."""

    from_id: int
    to_id: int
    term: int
    index: int
    context: bytes


Message = (
    RequestVote
    | RequestVoteReply
    | AppendEntries
    | AppendEntriesReply
    | Heartbeat
    | HeartbeatReply
    | InstallSnapshot
    | TimeoutNow
    | ReadIndex
    | ReadIndexReply
)

_encoder = msgspec.msgpack.Encoder()
_decoder: msgspec.msgpack.Decoder[Message] = msgspec.msgpack.Decoder(Message)


def encode_message(message: Message) -> bytes:
    return _encoder.encode(message)


def decode_message(data: bytes) -> Message:
    try:
        return _decoder.decode(data)
    except msgspec.DecodeError as exc:
        raise ProtocolError(f"decode consensus message: {exc}") from exc
