"""Configuration of one replica's consensus core. Every bound is named; :meth:`Config.validate` reports all
problems at once with :class:`~feitian.errors.ConfigError`."""

from __future__ import annotations

from typing import Protocol

import msgspec

from feitian.base.units import MiB
from feitian.errors import ConfigError


class RandomSource(Protocol):
    """The randomness the core needs (election timeout jitter); ``random.Random(seed)`` satisfies it."""

    def randrange(self, start: int, stop: int | None = ..., step: int = ...) -> int: ...


class Config(msgspec.Struct, frozen=True, kw_only=True):
    # This replica's id, >= 1 and unique in the cluster.
    id: int
    # Ticks a follower waits without hearing from a leader before campaigning; the actual timeout is drawn
    # from [election_tick, 2 * election_tick) each time (paper §5.2). Also the check-quorum period.
    election_tick: int = 10
    # Ticks between leader heartbeats; must be well below election_tick.
    heartbeat_tick: int = 1
    # Bound on the entry bytes in one AppendEntries (an entry larger than this still travels alone).
    max_size_per_msg_bytes: int = 1 * MiB
    # Bound on unacknowledged AppendEntries per follower in the REPLICATE state (the pipelining window).
    max_inflight_msgs: int = 256
    # Bound on the payload bytes the leader holds uncommitted; proposals beyond it raise OverloadedError.
    max_uncommitted_size_bytes: int = 64 * MiB
    # Bound on the entry bytes handed out for applying in one Ready (at least one entry).
    max_committed_size_per_ready_bytes: int = 64 * MiB
    # Leader ticks to wait for an InstallSnapshot to be acknowledged before presuming it lost and re-probing
    # the follower (drivers should also call RawNode.report_snapshot when the transfer ends).
    snapshot_timeout_tick: int = 100
    # Campaign with a pre-vote round first so a partitioned replica cannot disrupt the cluster (thesis §9.6).
    pre_vote: bool = True
    # A leader that has not heard from a quorum for election_tick steps down, and followers that have a leader
    # ignore vote requests for election_tick (thesis §6.2, §4.2.3).
    check_quorum: bool = True

    def validate(self) -> None:
        problems: list[str] = []
        if self.id < 1:
            problems.append(f"id must be >= 1, got {self.id}")
        if self.heartbeat_tick < 1:
            problems.append(f"heartbeat_tick must be >= 1, got {self.heartbeat_tick}")
        if self.election_tick <= self.heartbeat_tick:
            problems.append(
                f"election_tick ({self.election_tick}) must be greater than heartbeat_tick ({self.heartbeat_tick})"
            )
        if self.max_size_per_msg_bytes < 1:
            problems.append(f"max_size_per_msg_bytes must be >= 1, got {self.max_size_per_msg_bytes}")
        if self.max_inflight_msgs < 1:
            problems.append(f"max_inflight_msgs must be >= 1, got {self.max_inflight_msgs}")
        if self.max_uncommitted_size_bytes < 1:
            problems.append(f"max_uncommitted_size_bytes must be >= 1, got {self.max_uncommitted_size_bytes}")
        if self.max_committed_size_per_ready_bytes < 1:
            problems.append(
                f"max_committed_size_per_ready_bytes must be >= 1, got {self.max_committed_size_per_ready_bytes}"
            )
        if self.snapshot_timeout_tick < self.election_tick:
            problems.append(
                f"snapshot_timeout_tick ({self.snapshot_timeout_tick}) must be >= election_tick ({self.election_tick})"
            )
        if problems:
            raise ConfigError(f"consensus config of replica {self.id}", problems=problems)
