"""Units every component counts in: byte sizes and nanoseconds. One definition, imported everywhere (they were
redefined module by module)."""

from __future__ import annotations

__all__ = ["MS_NS", "SECOND_NS", "US_NS", "GiB", "KiB", "MiB", "ns_of_s", "s_of_ns"]

KiB = 1 << 10
MiB = 1 << 20
GiB = 1 << 30

US_NS = 1_000  # nanoseconds in a microsecond
MS_NS = 1_000_000  # nanoseconds in a millisecond
SECOND_NS = 1_000_000_000  # nanoseconds in a second


def ns_of_s(seconds: float) -> int:
    """Seconds (a config value, a timeout) as whole nanoseconds, the unit clocks and cores count in."""
    return int(seconds * SECOND_NS)


def s_of_ns(ns: int) -> float:
    """Nanoseconds as seconds, for asyncio waits and for people."""
    return ns / SECOND_NS
