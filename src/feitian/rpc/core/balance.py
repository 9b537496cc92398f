"""Choosing a server for a ``nuwa://`` service, and reconnect backoff. Pure: time and randomness are arguments.

The balancer keeps the resolved endpoints of one service as a cache item that is *New* (answered locally) or
*Old* (ask the resolver again) — the NUWA-8 scheme. A change notification or a failed endpoint makes it Old. Picks
are round-robin over endpoints that are not in a failure back-off window.
"""

from __future__ import annotations

from collections.abc import Sequence

from feitian.base.clock import RandomSource


class Backoff:
    """Exponential back-off with jitter: attempt ``n`` waits a uniform time in [d/2, d], d = base * 2**n, capped."""

    def __init__(self, base_s: float = 0.05, max_s: float = 5.0) -> None:
        if base_s <= 0 or max_s < base_s:
            raise ValueError(f"backoff needs 0 < base_s <= max_s, got base_s={base_s}, max_s={max_s}")
        self.base_s = base_s
        self.max_s = max_s

    def delay_s(self, attempt: int, rng: RandomSource) -> float:
        ceiling: float = min(self.max_s, self.base_s * float(2 ** min(attempt, 30)))
        return ceiling / 2 + rng.random() * ceiling / 2


class Balancer:
    """Endpoint selection for one service (see module docstring)."""

    def __init__(self, failure_backoff_ns: int = 2_000_000_000) -> None:
        self.failure_backoff_ns = failure_backoff_ns
        self.endpoints: tuple[str, ...] = ()
        self.fresh = False
        self._next = 0
        self._failed_until: dict[str, int] = {}

    @property
    def needs_resolve(self) -> bool:
        return not self.fresh or not self.endpoints

    def update(self, endpoints: Sequence[str]) -> None:
        """A fresh answer from the resolver."""
        self.endpoints = tuple(sorted(set(endpoints)))
        self.fresh = True
        self._failed_until = {e: t for e, t in self._failed_until.items() if e in self.endpoints}

    def mark_stale(self) -> None:
        """A change notification arrived: the next pick asks the resolver first."""
        self.fresh = False

    def pick(self, now_ns: int) -> str | None:
        """An endpoint to try, or None if the service has no registered server."""
        n = len(self.endpoints)
        if n == 0:
            return None
        for i in range(n):
            candidate = self.endpoints[(self._next + i) % n]
            until = self._failed_until.get(candidate)
            if until is None or until <= now_ns:
                self._next = (self._next + i + 1) % n
                return candidate
        # Every endpoint failed recently: the one whose back-off ends first.
        return min(self.endpoints, key=lambda e: self._failed_until[e])

    def report_failure(self, endpoint: str, now_ns: int) -> None:
        """Connecting to ``endpoint`` failed: avoid it for a while and re-resolve (it may have gone away)."""
        self._failed_until[endpoint] = now_ns + self.failure_backoff_ns
        self.fresh = False

    def report_success(self, endpoint: str) -> None:
        self._failed_until.pop(endpoint, None)
