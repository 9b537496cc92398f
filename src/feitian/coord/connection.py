"""Connection management of a Nuwa client, separate from its session (NUWA-3).

:class:`ReplicaRouter` knows the replicas' addresses and which one it believes leads. Writes and heartbeats go
to the leader: a ``NotLeaderError`` names the leader (``leader_hint``) and the call follows it at once; a
replica that does not answer (connection refused or lost, no answer within the attempt timeout, no leader
elected yet) is left for the next one, with a short jittered back-off when every replica has been tried.
Reads and watches stick to one replica (any replica serves linearizable reads after a read barrier) and move
on when it fails. The session, its lease and its subscriptions live above this and survive every switch.
"""

from __future__ import annotations

import asyncio
import random
from typing import Any, TypeVar

from feitian.errors import (
    ConnectionLostError,
    DeadlineExceededError,
    FeitianError,
    InvalidArgumentError,
    NotLeaderError,
    UnavailableError,
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
    ) -> None:
        if not addresses:
            raise InvalidArgumentError("a Nuwa client needs at least one replica address")
        self.rpc = rpc
        self.addresses = list(dict.fromkeys(addresses))
        self.timeout_s = timeout_s
        self.attempt_timeout_s = attempt_timeout_s
        self.rng = rng or random.Random()
        self.leader: str | None = None
        self._next = self.rng.randrange(len(self.addresses))
        self.current = self.addresses[self._next]
        self.calls = 0  # attempts sent, by kind of request: tests count them
        self.calls_by_method: dict[str, int] = {}
        self._failed_until: dict[str, float] = {}  # replica -> loop time until which it is skipped

    def _avoided(self, address: str) -> bool:
        until = self._failed_until.get(address)
        return until is not None and until > asyncio.get_running_loop().time()

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
        loop = asyncio.get_running_loop()
        deadline = loop.time() + (self.timeout_s if timeout_s is None else timeout_s)
        per_attempt = self.attempt_timeout_s if attempt_timeout_s is None else attempt_timeout_s
        failures = 0
        last: FeitianError | None = None
        while True:
            left = deadline - loop.time()
            if left <= 0:
                break
            target = (self.leader or self._rotate()) if leader else self.current
            try:
                self._count(request)
                result = await self.rpc.call(target, request, timeout=max(0.01, min(per_attempt, left)))
            except NotLeaderError as exc:
                last = exc
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
                last = exc
                self._failed_until[target] = loop.time() + FAILED_AVOID_S
                if leader:
                    self.leader = None
                self.move_on(target)
                if isinstance(exc, ConnectionLostError) and not retry_lost:
                    raise
            else:
                self._failed_until.pop(target, None)
                if leader:
                    self.leader = target
                return result
            failures += 1
            if failures % len(self.addresses) == 0:
                pause = min(MAX_RETRY_PAUSE_S, RETRY_PAUSE_S * 2 ** (failures // len(self.addresses) - 1))
                await asyncio.sleep(min(max(0.0, deadline - loop.time()), pause * (0.5 + self.rng.random() / 2)))
        name = type(request).__name__
        raise UnavailableError(
            f"{name}: no replica of {', '.join(self.addresses)} answered within {timeout_s or self.timeout_s}s"
            + (f" (last: {last.message})" if last is not None else ""),
            hint="is the coordination service running? `feitian cluster status` shows the coord replicas",
        )

    def move_on(self, failed: str) -> None:
        if self.current == failed:
            self.current = self._rotate()
            if self.current == failed and len(self.addresses) > 1:
                self.current = self._rotate()
