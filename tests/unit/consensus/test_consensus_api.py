"""The driver-facing contract: configuration validation, the Ready/advance cycle, wire messages, and the
purity of the consensus package (no I/O, clock or randomness of its own)."""

from __future__ import annotations

import ast
import random
from pathlib import Path

import pytest
from consensus_harness import handle, make_node, make_storage

import feitian.consensus
from feitian.consensus import (
    AppendEntries,
    AppendEntriesReply,
    Config,
    Entry,
    Heartbeat,
    HeartbeatReply,
    InstallSnapshot,
    RawNode,
    ReadIndex,
    ReadIndexReply,
    RequestVote,
    RequestVoteReply,
    Role,
    Snapshot,
    SnapshotMeta,
    SoftState,
    TimeoutNow,
    decode_message,
    encode_message,
)
from feitian.consensus.types import ConfState
from feitian.errors import ConfigError, InternalError, InvalidArgumentError, ProtocolError


def test_config_error_lists_every_problem() -> None:
    """Named bounds (STYLE principle 7); §5.2 needs election_tick well above heartbeat_tick. Every problem is
    reported at once."""
    config = Config(
        id=0,
        election_tick=1,
        heartbeat_tick=1,
        max_size_per_msg_bytes=0,
        max_inflight_msgs=0,
        max_uncommitted_size_bytes=0,
        snapshot_timeout_tick=0,
    )
    with pytest.raises(ConfigError) as info:
        config.validate()
    problems = info.value.problems
    assert len(problems) == 6
    for name in ("id", "election_tick", "max_size_per_msg_bytes", "max_inflight_msgs", "max_uncommitted", "snapshot"):
        assert any(name in p for p in problems), name
    with pytest.raises(ConfigError):
        RawNode(config, make_storage(), random.Random(0))


def test_messages_roundtrip_on_the_wire() -> None:
    """Figure 2 RPCs (plus §7 InstallSnapshot, thesis §3.10 TimeoutNow, §6.4 ReadIndex) survive msgpack."""
    snapshot = Snapshot(meta=SnapshotMeta(index=3, term=2, conf=ConfState(voters=(1, 2))), data=b"s")
    messages = [
        RequestVote(from_id=1, to_id=2, term=3, last_log_index=4, last_log_term=2, pre_vote=True),
        RequestVoteReply(from_id=2, to_id=1, term=3, granted=True, pre_vote=True),
        AppendEntries(from_id=1, to_id=2, term=3, prev_log_index=4, prev_log_term=2, entries=(Entry(3, 5, data=b"x"),)),
        AppendEntriesReply(from_id=2, to_id=1, term=3, index=4, reject=True, hint_index=2, hint_term=1),
        Heartbeat(from_id=1, to_id=2, term=3, commit=4, context=b"c"),
        HeartbeatReply(from_id=2, to_id=1, term=3, context=b"c"),
        InstallSnapshot(from_id=1, to_id=2, term=3, snapshot=snapshot),
        TimeoutNow(from_id=1, to_id=2, term=3),
        ReadIndex(from_id=2, to_id=1, term=3, context=b"r"),
        ReadIndexReply(from_id=1, to_id=2, term=3, index=7, context=b"r"),
    ]
    for message in messages:
        assert decode_message(encode_message(message)) == message
    with pytest.raises(ProtocolError):
        decode_message(b"\x01garbage")


def test_ready_reports_soft_and_hard_state_only_on_change() -> None:
    """The Ready carries hard_state only when it must be persisted anew, and soft_state on role changes."""
    node, storage = make_node(1, voters=(1,))
    assert node.ready() is None
    node.campaign()
    rd = node.ready()
    assert rd is not None
    assert rd.soft_state == SoftState(leader_id=1, role=Role.LEADER)
    assert rd.hard_state is not None and rd.hard_state.vote == 1
    assert rd.hard_state.commit == 1 and not rd.committed_entries  # the noop is not counted until persisted
    storage.append(rd.entries)
    storage.set_hard_state(rd.hard_state)
    node.advance(rd)
    # Thesis §10.2.1: the leader's own copy counts once the driver has persisted it, which advance() reports.
    rd = node.ready()
    assert rd is not None and rd.soft_state is None and [e.index for e in rd.committed_entries] == [2]
    assert rd.hard_state is not None and rd.hard_state.commit == 2
    storage.set_hard_state(rd.hard_state)
    node.advance(rd)
    assert node.ready() is None
    node.propose(b"x")
    rd = node.ready()
    assert rd is not None and rd.soft_state is None and rd.hard_state is None and len(rd.entries) == 1
    storage.append(rd.entries)
    node.advance(rd)
    rd = node.ready()
    assert rd is not None and rd.soft_state is None
    assert rd.hard_state is not None and rd.hard_state.commit == 3  # commit moved, term and vote did not


def test_ready_must_be_advanced_before_the_next() -> None:
    """Figure 2 "persistent state ... updated on stable storage before responding": one Ready at a time, so
    nothing new is handed out before the driver confirmed the previous batch."""
    node, _storage = make_node(1, voters=(1,))
    node.campaign()
    rd = node.ready()
    assert rd is not None
    with pytest.raises(InternalError):
        node.ready()
    assert not node.has_ready()
    other, _ = make_node(1, voters=(1,))
    other.campaign()
    other_rd = other.ready()
    assert other_rd is not None
    with pytest.raises(InvalidArgumentError):
        node.advance(other_rd)
    node.advance(rd)


def test_messages_to_another_replica_are_refused() -> None:
    """A misrouted RPC is a driver bug, reported rather than silently applied."""
    node, _ = make_node(1)
    with pytest.raises(InvalidArgumentError):
        node.step(Heartbeat(from_id=2, to_id=3, term=1))


def test_applied_index_given_at_restart_skips_reapplying() -> None:
    """A state machine that persists itself passes applied_index so entries are not handed out twice."""
    node, storage = make_node(1, voters=(1,))
    node.campaign()
    for i in range(3):
        node.propose(bytes([i]))
    out = handle(node, storage)
    last = out.committed[-1].index
    restarted = RawNode(Config(id=1), storage, random.Random(1), applied_index=last - 1)
    out = handle(restarted, storage)
    assert [e.index for e in out.committed] == [last]


def test_consensus_package_is_pure() -> None:
    """STYLE principle 1: feitian.consensus imports no asyncio, socket, time, random, os or file I/O."""
    forbidden = {"asyncio", "socket", "time", "random", "os", "io", "pathlib", "threading", "subprocess"}
    package = Path(feitian.consensus.__file__).parent
    for path in sorted(package.glob("*.py")):
        tree = ast.parse(path.read_text())
        for node in ast.walk(tree):
            if isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom):
                names = [node.module or ""]
            elif isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id == "open":
                raise AssertionError(f"{path.name}: calls open()")
            else:
                continue
            for name in names:
                assert name.split(".")[0] not in forbidden, f"{path.name} imports {name}"
