"""The one way a client reaches a replicated service: follow the leader, back off, retry by one set of rules.

:class:`Router` knows the replicas' addresses and which one it believes leads. Used by Nuwa's client (and its
sessions and watches), Pangu's client and chunk servers, and the kv client.

* **To the leader** (``leader=True``, writes): a ``NotLeaderError`` names the leader (``leader_hint``) and the
  call follows it at once, unless the hint names a replica that just failed (a stale hint); a hop still counts
  as a failed attempt, so stale hints naming each other pause the caller instead of spinning.
* **To one replica** (``leader=False``, reads and watches that any replica serves): the call sticks to the
  current replica and moves on when it fails.
* A replica that does not answer (connection refused or lost, no answer within the attempt timeout, an
  UnavailableError such as an election or a leader whose log cannot be written) is skipped for
  ``FAILED_AVOID_S`` while another may answer. After every replica failed once in a row the caller pauses
  (``RETRY_PAUSE_S`` doubling to ``MAX_RETRY_PAUSE_S``, jittered), and goes round again until the deadline.
* An error whose ``reason`` is among ``fatal_reasons`` (e.g. the service's own ``disk_full``: no replica would do
  better) and every error that is not "unavailable" (not found, conflict, permission…) is raised at once.
* **Deadline**: ``timeout_s`` for the whole call (redirects and retries included), and never past the deadline
  of the Kuafu call being handled when the router is used inside a handler (``rpc.context.current_deadline``).
* **Outcome unknown**: an attempt that timed out, lost its connection or lost its leader (``outcome="unknown"``)
  may still be applied. With ``retry_lost=False`` a call whose connection broke or whose leader was lost is not
  sent again: that error is raised at once (a timed-out attempt is retried: it may not have arrived at all).
  Otherwise the request is sent again (a write carrying ``client_id`` and ``request_seq`` is applied once: the
  service's dedupe table answers a repeat with the first result); if the router then gives up on a request that
  is not ``idempotent``, its error says "an earlier attempt of this write may still be applied" with
  ``outcome="unknown"``.
"""

from __future__ import annotations

import asyncio
import random
from typing import Any, TypeVar

from feitian.base.clock import Clock, MonotonicClock
from feitian.base.units import SECOND_NS
from feitian.errors import (
    ConnectionLostError,
    DeadlineExceededError,
    FeitianError,
    InvalidArgumentError,
    NotLeaderError,
    UnavailableError,
    UnavailableReason,
)
from feitian.rpc import Client, Request, current_deadline

__all__ = ["FAILED_AVOID_S", "MAX_RETRY_PAUSE_S", "RETRY_PAUSE_S", "Router"]

R = TypeVar("R")

FAILED_AVOID_S = 1.0  # a replica that did not answer is skipped this long, while another one may answer
RETRY_PAUSE_S = 0.05  # after every replica failed once in a row, before going round again (jittered, doubling)
MAX_RETRY_PAUSE_S = 0.5
MIN_ATTEMPT_S = 0.01


class Router:
    def __init__(
        self,
        rpc: Client,
        addresses: list[str],
        *,
        timeout_s: float = 30.0,
        attempt_timeout_s: float = 2.0,
        service: str = "replicated service",
        fatal_reasons: tuple[str, ...] = (),
        unreachable_hint: str = "",
        clock: Clock | None = None,
        rng: random.Random | None = None,
    ) -> None:
        if not addresses:
            raise InvalidArgumentError(f"no {service} addresses given", hint=f"does the cluster run any {service}?")
        self.rpc = rpc
        self.addresses = list(dict.fromkeys(addresses))
        self.timeout_s = timeout_s
        self.attempt_timeout_s = attempt_timeout_s
        self.service = service
        self.fatal_reasons = fatal_reasons
        self.unreachable_hint = unreachable_hint or f"is the {service} running? `feitian cluster status`"
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

    def _budget_s(self, timeout_s: float | None) -> float:
        """The call's time: ``timeout_s`` (or the router's), cut to the deadline of the call being handled."""
        budget = self.timeout_s if timeout_s is None else timeout_s
        inherited = current_deadline.get()
        if inherited is not None:  # on the event loop's clock (rpc.context)
            budget = min(budget, inherited - asyncio.get_running_loop().time())
        return budget

    async def call(
        self,
        request: Request[R],
        *,
        leader: bool = True,
        timeout_s: float | None = None,
        attempt_timeout_s: float | None = None,
        retry_lost: bool = True,
        payload: Any = None,
    ) -> R:
        """Send ``request`` to the leader (``leader=True``) or the current replica, retrying on other replicas
        until the call's deadline (see the module docstring for the rules)."""
        budget = self._budget_s(timeout_s)
        clock = self.clock
        deadline_ns = clock.monotonic_ns() + int(budget * SECOND_NS)
        per_attempt = self.attempt_timeout_s if attempt_timeout_s is None else attempt_timeout_s
        failures = 0
        last: FeitianError | None = None
        unknown = False  # an attempt whose outcome is unknown: it may still be applied
        while True:
            left = (deadline_ns - clock.monotonic_ns()) / SECOND_NS
            if left <= 0:
                break
            target = (self.leader or self._rotate()) if leader else self.current
            timeout = max(MIN_ATTEMPT_S, min(per_attempt, left))
            try:
                self._count(request)
                if payload is None:
                    result = await self.rpc.call(target, request, timeout=timeout)
                else:
                    result = await self.rpc.call(target, request, timeout=timeout, payload=payload)
            except NotLeaderError as exc:
                last = self.observed[target] = exc
                hint = str(exc.fields.get("leader_hint") or "")
                if leader:
                    usable = hint and hint != target and not self._avoided(hint)
                    self.leader = hint if usable else None
                else:
                    self.move_on(target)
            except (ConnectionLostError, UnavailableError, DeadlineExceededError) as exc:
                if exc.fields.get("reason") in self.fatal_reasons:
                    raise  # no other replica would do better
                last = self.observed[target] = exc
                lost = isinstance(exc, ConnectionLostError) or exc.fields.get("outcome") == "unknown"
                unknown = unknown or lost or isinstance(exc, DeadlineExceededError)
                self._failed_until[target] = clock.monotonic_ns() + int(FAILED_AVOID_S * SECOND_NS)
                if leader:
                    self.leader = None
                self.move_on(target)
                if lost and not retry_lost:
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
                left = max(0.0, (deadline_ns - clock.monotonic_ns()) / SECOND_NS)
                await clock.sleep(min(left, pause * (0.5 + self.rng.random() / 2)))
        error = self.gave_up(type(request).__name__, max(0.0, budget), last)
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
            hint=self.unreachable_hint,
            reason=UnavailableReason.UNREACHABLE,
        )

    def move_on(self, failed: str) -> None:
        """Leave ``failed`` as the current replica (for calls that stick to one)."""
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
