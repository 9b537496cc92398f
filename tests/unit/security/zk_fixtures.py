"""Shared deterministic keys, times and helpers for the Zhongkui unit tests."""

from __future__ import annotations

from dataclasses import dataclass

import pytest

from feitian.errors import FeitianError
from feitian.security import (
    CapabilityChain,
    KeyPair,
    Reason,
    RevocationList,
    Right,
    issue_capability,
)

SECOND_NS = 1_000_000_000
NOW_NS = 1_750_000_000 * SECOND_NS  # a fixed wall-clock time, mid 2025


def key(n: int, name: str) -> KeyPair:
    return KeyPair.from_seed(bytes([n]) * 32, name)


AUTHORITY = key(1, "authority")
ALICE = key(2, "alice")
BOB = key(3, "bob")
CAROL = key(4, "carol")
MALLORY = key(5, "mallory")
SERVICE = key(6, "coord-1")
PEOPLE = (ALICE, BOB, CAROL, MALLORY)
NO_REVOCATIONS = RevocationList()


def root(
    holder: KeyPair = ALICE,
    resources: tuple[str, ...] = ("coord:/apps/web",),
    rights: tuple[Right | str, ...] = (Right.READ, Right.WRITE),
    *,
    now_ns: int = NOW_NS,
    ttl_ns: int = 3600 * SECOND_NS,
    max_depth: int = 2,
    authority: KeyPair = AUTHORITY,
) -> CapabilityChain:
    return issue_capability(
        authority,
        holder_key=holder.public_key,
        holder_name=holder.name,
        resources=resources,
        rights=rights,
        now_ns=now_ns,
        ttl_ns=ttl_ns,
        max_depth=max_depth,
    )


def assert_refused(exc_info: pytest.ExceptionInfo[FeitianError], reason: Reason, cls: type[FeitianError]) -> None:
    exc = exc_info.value
    assert type(exc) is cls, f"expected {cls.__name__}, got {exc!r}"
    assert exc.fields.get("reason") == reason.value, f"expected reason {reason}, got {exc!r}"


@dataclass
class FakeClock:
    wall: int = NOW_NS
    mono: int = 0

    def wall_ns(self) -> int:
        return self.wall

    def monotonic_ns(self) -> int:
        return self.mono

    def advance(self, ns: int) -> None:
        self.wall += ns
        self.mono += ns
