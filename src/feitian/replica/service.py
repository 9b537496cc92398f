"""The base of a replicated service: a state machine on the shared Raft driver, its leadership duties, and the
one way its handlers propose, read and refuse.

::

    class MyService(ReplicatedService):
        def __init__(self, config: ReplicaConfig, client: Client, clock: Clock) -> None:
            self.sm = MyStateMachine()
            super().__init__("my-service", config, self.sm, client, clock=clock, start_entry=encode_start_term)
            self.duties.on_ready(self._became_leader)          # leader-only state, built once ready
            self.duties.add_task(self._maintenance)            # leader-only loop, stopped on step-down

        async def put(self, ctx: CallContext, req: Put) -> PutReply:
            return PutReply(await self.propose(ctx, encode(req), "put"))

* :meth:`propose` refuses on a follower with ``NotLeaderError(leader_hint=...)`` (built in one place:
  :meth:`LeaderDuties.not_leader`), and waits for the entry to apply no longer than the caller's deadline (the
  Kuafu call's ``ctx.deadline``). A state machine's result that is an exception is raised.
* :meth:`read_barrier` makes a local read linearizable, bounded by the caller's deadline likewise.
* Exactly-once retries: the state machine keeps a :class:`feitian.replica.core.DedupeTable` keyed by the
  request's ``client_id`` and ``request_seq``; clients send them through :class:`feitian.replica.Router`.
"""

from __future__ import annotations

import asyncio
import random
from collections.abc import Callable
from typing import Any

from feitian.base.clock import Clock
from feitian.replica.driver import Replica, ReplicaConfig, StateMachine
from feitian.replica.duties import LeaderDuties
from feitian.rpc import CallContext, Client, Server, current_deadline

__all__ = ["DEADLINE_MARGIN_S", "ReplicatedService", "remaining_s"]

DEADLINE_MARGIN_S = 0.05  # kept from the caller's deadline so the answer still reaches it in time


def remaining_s(ctx: CallContext | None, default: float, margin: float = DEADLINE_MARGIN_S) -> float:
    """How long a handler may wait: ``default``, or less when the caller's deadline is sooner (at least 10 ms).
    The deadline is ``ctx.deadline``, or without a context the deadline of the Kuafu call being handled
    (``current_deadline``); both are on the event loop's clock, so this is the kit's one reading of it."""
    deadline = current_deadline.get() if ctx is None else ctx.deadline
    if deadline is None:
        return default
    return max(0.01, min(default, deadline - asyncio.get_running_loop().time() - margin))


class ReplicatedService:
    def __init__(
        self,
        name: str,
        config: ReplicaConfig,
        state_machine: StateMachine,
        client: Client,
        *,
        clock: Clock,
        rng: random.Random | None = None,
        start_entry: Callable[[int], bytes] | None = None,
    ) -> None:
        self.name = name
        self.clock = clock
        self.replica = Replica(
            config, state_machine, client, rng=rng, on_leader_change=self._leader_changed, clock=clock
        )
        self.duties = LeaderDuties(self.replica, name=name, start_entry=start_entry, clock=clock)
        self.propose_timeout_s = config.default_timeout_s

    def _leader_changed(self, leader_id: int) -> None:
        self.duties.leader_changed(leader_id)

    # -- lifecycle -----------------------------------------------------------------------------------------------

    def register(self, server: Server) -> None:
        """Serve the replica's consensus traffic; a subclass adds its own handlers."""
        self.replica.register(server)

    async def start(self) -> None:
        await self.replica.start()
        await self.duties.start()

    async def stop(self) -> None:
        await self.duties.stop()
        await self.replica.stop()

    # -- what handlers use ---------------------------------------------------------------------------------------

    @property
    def is_leader(self) -> bool:
        return self.replica.is_leader

    def require_leader(self, what: str) -> None:
        """NotLeaderError (with the leader's address) unless this replica leads."""
        if not self.replica.is_leader:
            raise self.duties.not_leader(what)

    async def propose(self, ctx: CallContext | None, data: bytes, what: str) -> Any:
        """Replicate ``data`` and return the state machine's result (raised when it is an exception)."""
        if not self.replica.is_leader:
            raise self.duties.not_leader(what)
        result = await self.replica.propose(data, timeout=remaining_s(ctx, self.propose_timeout_s))
        if isinstance(result, Exception):
            raise result
        return result

    async def read_barrier(self, ctx: CallContext | None, default_s: float = 5.0) -> None:
        await self.replica.read_barrier(timeout=remaining_s(ctx, default_s))
