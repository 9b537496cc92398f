"""Calling the leader of a replicated service, given its replicas' addresses, by following redirects.

Replicas answer writes only as leader and otherwise raise ``NotLeaderError(leader_hint=...)``; the caller follows
the hint and remembers the leader. A replica that does not answer within ``attempt_timeout_s`` (frozen,
partitioned), or answers UnavailableError (an election, a leader still starting), is skipped for the next one
after a short back-off, until the call's overall timeout — including a leader whose own log cannot be written
(``reason="log_not_writable"``: it stops heartbeating and another replica is elected). Errors whose reason is
among ``fatal_reasons`` (the service's own ``disk_full``: no replica would do better) are raised at once. Used by
the kv client and by Pangu's clients and chunk servers to reach the masters.
"""

from __future__ import annotations

import itertools
from typing import Any, TypeVar

from feitian.base.clock import Clock, MonotonicClock
from feitian.errors import (
    ConnectionLostError,
    DeadlineExceededError,
    InvalidArgumentError,
    NotLeaderError,
    UnavailableError,
    UnavailableReason,
)
from feitian.rpc import Client, Request

__all__ = ["LeaderCaller"]

R = TypeVar("R")
BACKOFF_S = 0.05


class LeaderCaller:
    def __init__(
        self,
        client: Client,
        addresses: list[str],
        *,
        timeout_s: float = 30.0,
        attempt_timeout_s: float = 5.0,
        service: str = "replica",
        fatal_reasons: tuple[str, ...] = (UnavailableReason.DISK_FULL,),
        clock: Clock | None = None,
    ) -> None:
        if not addresses:
            raise InvalidArgumentError(f"no {service} addresses given", hint=f"does the cluster run any {service}?")
        self.client = client
        self.service = service
        self.fatal_reasons = fatal_reasons
        self.addresses = list(addresses)
        self.timeout_s = timeout_s
        self.attempt_timeout_s = attempt_timeout_s
        self.clock = clock or MonotonicClock()  # the call's deadline and the back-off between replicas
        self.leader: str | None = None
        self._rotation = itertools.cycle(self.addresses)

    async def call(
        self,
        request: Request[R],
        *,
        retry_lost: bool = True,
        timeout_s: float | None = None,
        attempt_timeout_s: float | None = None,
        payload: Any = None,
    ) -> R:
        """Call the leader. ``retry_lost``: the request may be sent again after a connection broke with it in
        flight (it is idempotent, or the caller copes with a repeat); otherwise ConnectionLostError is raised."""
        clock = self.clock
        budget = self.timeout_s if timeout_s is None else timeout_s
        deadline_ns = clock.monotonic_ns() + int(budget * 1e9)
        attempt = self.attempt_timeout_s if attempt_timeout_s is None else attempt_timeout_s
        last: Exception | None = None
        while True:
            target = self.leader or next(self._rotation)
            remaining = (deadline_ns - clock.monotonic_ns()) / 1e9
            if remaining <= 0:
                break
            try:
                result: R = await self.client.call(target, request, timeout=min(attempt, remaining), payload=payload)
                self.leader = target
                return result
            except NotLeaderError as exc:
                hint = exc.fields.get("leader_hint") or None
                self.leader = hint if hint != target else None
                last = exc
                if self.leader is None:
                    await clock.sleep(BACKOFF_S)
            except ConnectionLostError as exc:
                self.leader = None
                last = exc
                if not retry_lost:
                    raise
            except (UnavailableError, DeadlineExceededError) as exc:
                if exc.fields.get("outcome") == "unknown" and not retry_lost:
                    raise
                if exc.fields.get("reason") in self.fatal_reasons:
                    raise  # retrying elsewhere will not help
                self.leader = None
                last = exc
                await clock.sleep(BACKOFF_S)
        raise UnavailableError(
            f"{type(request).__name__}: no {self.service} answered within {budget:.0f}s: {last}",
            hint="is the cluster running? `feitian cluster status`",
        )
