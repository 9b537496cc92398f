"""Leadership duties of a replicated service: what only its leader does, started and stopped with leadership.

::

    duties = LeaderDuties(replica, not_leader, start_entry=lambda term: encode(StartTerm(term)))
    duties.on_ready(lambda term: tracker.become_leader(term, ...))      # sync, in order, when ready
    duties.on_step_down(tracker.step_down)                              # sync or async, in order
    duties.add_task(expiry_loop)                                        # a leader-only task (a coroutine function)
    await duties.start()          # follows leadership until stop()
    duties.ready                  # this replica leads *and* has applied its start-of-term entry

One task follows the replica's leadership, woken by the driver's leader-change callback (``leader_changed``) and
checking every ``poll_s`` besides (a term change with the same leader may not show as a leader change):

1. on becoming leader of term T it proposes the service's start-of-term entry (``start_entry(T)``; without one,
   it takes a read barrier, which waits for the driver's own empty entry of T). Once that has applied, every
   entry of earlier leaders has too: the duties are *ready*. The ``on_ready`` hooks run (with T), then every
   leader-only task starts. If the entry fails, the next check tries again.
2. On losing leadership, or on a new term, ``ready`` turns false at once, the ``on_step_down`` hooks run, and
   the leader-only tasks are cancelled and awaited before anything of a new term starts.

``spawn`` runs a one-off coroutine in the same group (cancelled on step-down). A task that fails is logged once
and not restarted until the next term; a duty that must survive errors catches them itself.
"""

from __future__ import annotations

import asyncio
import inspect
import logging
from collections.abc import Callable, Coroutine
from typing import Any

from feitian.base.clock import Clock, MonotonicClock
from feitian.errors import FeitianError, NotLeaderError
from feitian.replica.driver import Replica
from feitian.runtime.periodic import PeriodicTask

__all__ = ["LeaderDuties"]

log = logging.getLogger(__name__)

LEADERSHIP_POLL_S = 0.05  # how often leadership is re-checked besides the driver's leader-change callback

TaskFactory = Callable[[], Coroutine[Any, Any, Any]]


class LeaderDuties:
    def __init__(
        self,
        replica: Replica,
        *,
        name: str = "replica",
        start_entry: Callable[[int], bytes] | None = None,
        poll_s: float = LEADERSHIP_POLL_S,
        clock: Clock | None = None,
    ) -> None:
        self.replica = replica
        self.name = name
        self.start_entry = start_entry
        self.poll_s = poll_s
        self.ready = False
        self.term = 0  # the term the duties are ready in (0: none)
        self.terms_led = 0  # how many terms this replica became ready in
        self._ready_hooks: list[Callable[[int], None]] = []
        self._down_hooks: list[Callable[[], Any]] = []
        self._factories: list[TaskFactory] = []
        self._tasks: set[asyncio.Task[Any]] = set()
        self._taking_over: asyncio.Task[None] | None = None
        # Leadership checks: at once, every poll_s, and whenever leader_changed() wakes it.
        self._follower = PeriodicTask(
            f"{name} leadership", self.check, poll_s, clock=clock or MonotonicClock(), logger=log, delay_first=False
        )

    # -- what a service declares ---------------------------------------------------------------------------------

    def on_ready(self, hook: Callable[[int], None]) -> None:
        """Run ``hook(term)`` when this replica is ready as leader of ``term`` (before the tasks start)."""
        self._ready_hooks.append(hook)

    def on_step_down(self, hook: Callable[[], Any]) -> None:
        """Run ``hook()`` (awaited if it returns an awaitable) when leadership ends, before the tasks are
        cancelled."""
        self._down_hooks.append(hook)

    def add_task(self, factory: TaskFactory) -> None:
        """A leader-only task: ``factory()`` is started whenever the duties become ready, cancelled on step-down."""
        self._factories.append(factory)

    def spawn(self, coro: Coroutine[Any, Any, Any]) -> asyncio.Task[Any]:
        """Run a one-off coroutine among the leader-only tasks (cancelled on step-down)."""
        task = asyncio.get_running_loop().create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._finished)
        return task

    # -- lifecycle -----------------------------------------------------------------------------------------------

    def leader_changed(self, _leader_id: int = 0) -> None:
        """The driver's ``on_leader_change`` callback (or any reason to check leadership now)."""
        self._follower.wake()

    async def start(self) -> None:
        self._follower.start()

    async def stop(self) -> None:
        await self._follower.stop()
        if self._taking_over is not None:
            self._taking_over.cancel()
            await asyncio.gather(self._taking_over, return_exceptions=True)
        await self._step_down("stopping")

    async def check(self) -> None:
        """Compare the duties with the replica's leadership now, and step down or take over as needed."""
        node = self.replica.node
        if node is None:
            return
        leader, term = self.replica.is_leader, node.term
        if self.ready and (not leader or term != self.term):
            await self._step_down(f"term now {term}" + ("" if leader else ", not the leader"))
        if leader and not self.ready and self._taking_over is None:
            self._taking_over = asyncio.get_running_loop().create_task(self._take_over(term))

    async def _take_over(self, term: int) -> None:
        try:
            if self.start_entry is not None:
                await self.replica.propose(self.start_entry(term))
            else:
                await self.replica.read_barrier()
        except FeitianError as exc:
            log.info("%s: the start-of-term entry of term %d did not apply: %s", self.name, term, exc.message)
            return
        finally:
            self._taking_over = None  # after a failure the next check tries again
        node = self.replica.node
        if not (self.replica.is_leader and node is not None and node.term == term) or self.ready:
            self._follower.wake()
            return
        self.ready, self.term = True, term
        self.terms_led += 1
        for hook in self._ready_hooks:
            hook(term)
        for factory in self._factories:
            self.spawn(factory())
        log.info("%s: leader of term %d, ready", self.name, term)
        self._follower.wake()

    async def _step_down(self, why: str) -> None:
        was_ready, self.ready = self.ready, False
        if was_ready:
            log.info("%s: stepping down from the duties of term %d (%s)", self.name, self.term, why)
            for hook in self._down_hooks:
                result = hook()
                if inspect.isawaitable(result):
                    await result
        tasks = list(self._tasks)
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

    def _finished(self, task: asyncio.Task[Any]) -> None:
        self._tasks.discard(task)
        if not task.cancelled() and task.exception() is not None:
            log.error("%s: a leader task failed", self.name, exc_info=task.exception())

    # -- refusals ------------------------------------------------------------------------------------------------

    def not_leader(self, what: str) -> NotLeaderError:
        """The one refusal of a replicated service's request on a replica that cannot serve it as leader: the
        leader's address as ``leader_hint``; a leader still taking over names none (the caller retries)."""
        if self.replica.is_leader:
            return NotLeaderError(
                f"{what}: replica {self.replica.config.id} is not the leader (it is taking over)", leader_hint=""
            )
        return NotLeaderError(
            f"{what}: replica {self.replica.config.id} is not the leader",
            leader_hint=self.replica.leader_address or "",
        )

    def require_ready(self, what: str) -> None:
        """Raise :meth:`not_leader` unless this replica leads and its duties are ready."""
        if not (self.ready and self.replica.is_leader):
            raise self.not_leader(what)
