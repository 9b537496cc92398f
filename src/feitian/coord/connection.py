"""Connection management of a Nuwa client, separate from its session (NUWA-3).

:class:`ReplicaRouter` knows the replicas' addresses and which one it believes leads. Writes and heartbeats go
to the leader: a ``NotLeaderError`` names the leader (``leader_hint``) and the call follows it at once; a
replica that does not answer (connection refused or lost, no answer within the attempt timeout, no leader
elected yet) is left for the next one, with a short jittered back-off when every replica has been tried.
Reads and watches stick to one replica (any replica serves linearizable reads after a read barrier) and move
on when it fails. The session, its lease and its subscriptions live above this and survive every switch.
"""

from __future__ import annotations

import random
from typing import Any, TypeVar

from feitian.base.clock import Clock, MonotonicClock
from feitian.errors import (
    ConnectionLostError,
    DeadlineExceededError,
    FeitianError,
    InvalidArgumentError,
    NotLeaderError,
    UnavailableError,
    UnavailableReason,
)
from feitian.rpc import Client, Request

__all__ = ["ReplicaRouter"]

R = TypeVar("R")

FAILED_AVOID_S = 1.0  # a replica that did not answer is skipped this long, while another one may answer
RETRY_PAUSE_S = 0.05  # after every replica failed once in a row, before going round again (jittered, doubling)
MAX_RETRY_PAUSE_S = 0.5


class ReplicaRouter:
    def __init__(
        self,
        rpc: Client,
        addresses: list[str],
        *,
        timeout_s: float = 30.0,
        attempt_timeout_s: float = 2.0,
        rng: random.Random | None = None,
        clock: Clock | None = None,
    ) -> None:
        if not addresses:
            raise InvalidArgumentError("a Nuwa client needs at least one replica address")
        self.rpc = rpc
        self.addresses = list(dict.fromkeys(addresses))
        self.timeout_s = timeout_s
        self.attempt_timeout_s = attempt_timeout_s
        self.rng = rng or random.Random()
        self.clock = clock or MonotonicClock()  # deadlines, back-off pauses, how long a failed replica is skipped
        self.leader: str | None = None
        self._next = self.rng.randrange(len(self.addresses))
        self.current = self.addresses[self._next]
        self.calls = 0  # attempts sent, by kind of request: tests count them
        self.calls_by_method: dict[str, int] = {}
        self._failed_until: dict[str, int] = {}  # replica -> clock time (ns) until which it is skipped
        self.observed: dict[str, FeitianError] = {}  # replica -> how it last failed a call (until it answers)

    def _avoided(self, address: str) -> bool:
        until = self._failed_until.get(address)
        return until is not None and until > self.clock.monotonic_ns()

    def _rotate(self) -> str:
        """The next replica, skipping those that failed just now (unless every one did)."""
        for _ in range(len(self.addresses)):
            self._next = (self._next + 1) % len(self.addresses)
            if not self._avoided(self.addresses[self._next]):
                break
        return self.addresses[self._next]

    def _count(self, request: Request[Any]) -> None:
        self.calls += 1
        name = type(request).__name__
        self.calls_by_method[name] = self.calls_by_method.get(name, 0) + 1

    async def call(
        self,
        request: Request[R],
        *,
        leader: bool,
        timeout_s: float | None = None,
        attempt_timeout_s: float | None = None,
        retry_lost: bool = True,
    ) -> R:
        """Send ``request`` to the leader (``leader=True``) or the current replica, retrying on other replicas
        until ``timeout_s``. ``retry_lost=False``: a call whose connection broke is not sent again (its
        outcome is unknown); writes carry a request_seq, so they can be retried."""
        clock = self.clock
        deadline_ns = clock.monotonic_ns() + int((self.timeout_s if timeout_s is None else timeout_s) * 1e9)
        per_attempt = self.attempt_timeout_s if attempt_timeout_s is None else attempt_timeout_s
        failures = 0
        last: FeitianError | None = None
        # A write whose attempt timed out, lost its connection or lost its leader may still be applied later.
        unknown = False
        while True:
            left = (deadline_ns - clock.monotonic_ns()) / 1e9
            if left <= 0:
                break
            target = (self.leader or self._rotate()) if leader else self.current
            try:
                self._count(request)
                result = await self.rpc.call(target, request, timeout=max(0.01, min(per_attempt, left)))
            except NotLeaderError as exc:
                last = self.observed[target] = exc
                hint = str(exc.fields.get("leader_hint") or "")
                if leader:
                    # Follow the hint at once, unless it names a replica that just failed (an old leader that a
                    # follower has not yet heard is gone). A hop still counts as a failure: replicas with stale
                    # hints naming each other pause the caller every round, not spin until the deadline.
                    usable = hint and hint != target and not self._avoided(hint)
                    self.leader = hint if usable else None
                else:
                    self.move_on(target)
            except (ConnectionLostError, UnavailableError, DeadlineExceededError) as exc:
                last = self.observed[target] = exc
                unknown = unknown or not isinstance(exc, UnavailableError) or exc.fields.get("outcome") == "unknown"
                self._failed_until[target] = clock.monotonic_ns() + int(FAILED_AVOID_S * 1e9)
                if leader:
                    self.leader = None
                self.move_on(target)
                if isinstance(exc, ConnectionLostError) and not retry_lost:
                    raise
            else:
                self._failed_until.pop(target, None)
                self.observed.pop(target, None)
                if leader:
                    self.leader = target
                return result
            failures += 1
            if failures % len(self.addresses) == 0:
                pause = min(MAX_RETRY_PAUSE_S, RETRY_PAUSE_S * 2 ** (failures // len(self.addresses) - 1))
                left = max(0.0, (deadline_ns - clock.monotonic_ns()) / 1e9)
                await clock.sleep(min(left, pause * (0.5 + self.rng.random() / 2)))
        error = self.gave_up(type(request).__name__, self.timeout_s if timeout_s is None else timeout_s, last)
        if unknown and not getattr(request, "idempotent", False):
            error = UnavailableError(
                error.message + "; an earlier attempt of this write may still be applied",
                hint=error.hint,
                reason=error.fields.get("reason", ""),
                outcome="unknown",
            )
        raise error

    def gave_up(self, name: str, waited_s: float, last: FeitianError | None = None) -> UnavailableError:
        """The error after ``waited_s`` without an answer, saying what was observed of each replica since it last
        answered: replicas that answered but none leading (a lost quorum, or an election going on) are told apart
        from replicas not reached."""
        seen = self.observed
        answered = [a for a in self.addresses if a in seen and _answered(seen[a])]
        observed = "; ".join(f"{a}: {_observation(seen[a])}" for a in self.addresses if a in seen)
        n, majority = len(self.addresses), len(self.addresses) // 2 + 1
        if answered:
            return UnavailableError(
                f"{name}: no leader: quorum lost? {len(answered)} of {n} replicas answered within {waited_s:g}s and "
                f"none leads ({observed})",
                hint=f"the replicas elect a leader only while a majority ({majority} of {n}) of them is up and "
                "connected; `feitian cluster status` shows which are stopped, `feitian cluster start NODE` "
                "starts one again",
                reason=UnavailableReason.NO_LEADER,
            )
        return UnavailableError(
            f"{name}: no replica of {', '.join(self.addresses)} answered within {waited_s:g}s"
            + (f" ({observed})" if observed else f" (last: {last.message})" if last is not None else ""),
            hint="is the coordination service running? `feitian cluster status` shows the coord replicas",
            reason=UnavailableReason.UNREACHABLE,
        )

    def move_on(self, failed: str) -> None:
        if self.current == failed:
            self.current = self._rotate()
            if self.current == failed and len(self.addresses) > 1:
                self.current = self._rotate()


def _answered(exc: FeitianError) -> bool:
    """Whether the replica itself gave ``exc`` (it is up, but not leading), rather than not being reached: a
    connection that could not be made or broke names its endpoint, or is a ConnectionLostError."""
    if isinstance(exc, NotLeaderError):
        return True
    return (
        isinstance(exc, UnavailableError) and not isinstance(exc, ConnectionLostError) and "endpoint" not in exc.fields
    )


def _observation(exc: FeitianError) -> str:
    if isinstance(exc, NotLeaderError):
        hint = exc.fields.get("leader_hint")
        return f"not the leader (it names {hint})" if hint else "not the leader, and knows none"
    if isinstance(exc, ConnectionLostError):
        return "connection lost"
    if isinstance(exc, DeadlineExceededError):
        return "no answer in time"
    if "endpoint" in exc.fields:  # the client's own connect error: its cause is after the last colon
        return "cannot connect: " + exc.message.rsplit(": ", 1)[-1]
    return exc.message
