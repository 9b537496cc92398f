"""A replica's role and the volatile state reported to the driver."""

from __future__ import annotations

import enum

import msgspec


class Role(enum.Enum):
    FOLLOWER = "follower"
    PRE_CANDIDATE = "pre_candidate"
    CANDIDATE = "candidate"
    LEADER = "leader"


class SoftState(msgspec.Struct, frozen=True):
    """Who leads (0 = unknown) and this replica's role. Never persisted."""

    leader_id: int
    role: Role
