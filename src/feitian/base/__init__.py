"""Foundations shared by every component: clocks, randomness, limits. No I/O here."""

from feitian.base.clock import Clock, MonotonicClock, RandomSource

__all__ = ["Clock", "MonotonicClock", "RandomSource"]
