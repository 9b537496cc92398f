"""Lanes: separate queues and worker pools for server-side handlers (KUAFU-7).

A lane runs at most ``max_concurrency`` handlers at once and keeps at most ``max_queue`` waiting requests; a
request arriving at a full lane is refused at once with OverloadedError. Lanes share nothing, so a flood of
requests in one lane neither delays nor refuses requests in another.

Inside a lane, requests are run by a small pool of long-lived worker tasks rather than one task per request: a
worker runs queued handlers one after another for as long as they complete without waiting, and another worker
is woken only when a handler does wait. Under load this runs a whole batch of small requests in one event-loop
step, which is most of Kuafu's per-call speed.
"""

from __future__ import annotations

import asyncio
import collections
import logging

from feitian.errors import OverloadedError
from feitian.rpc.config import LaneConfig

log = logging.getLogger(__name__)


class Job:
    """A unit of work for a lane. Subclasses implement :meth:`run` (which must not raise, except
    CancelledError when :attr:`cancel_requested` is set)."""

    __slots__ = ("cancel_requested", "done", "task")

    def __init__(self) -> None:
        self.task: asyncio.Task[None] | None = None  # the worker running this job, while it runs
        self.cancel_requested = False
        self.done = False

    async def run(self) -> None:
        raise NotImplementedError

    def cancel(self) -> None:
        """Stop this job: drop it if still queued, cancel its handler if running."""
        if self.done or self.cancel_requested:
            return
        self.cancel_requested = True
        if self.task is not None:
            self.task.cancel()


class Lane:
    def __init__(self, name: str, config: LaneConfig) -> None:
        self.name = name
        self.config = config
        self._queue: collections.deque[Job] = collections.deque()
        self._idle: list[asyncio.Future[None]] = []
        self._workers: set[asyncio.Task[None]] = set()
        self._waking = 0  # workers woken or spawned that have not started draining yet
        self._active = 0  # workers inside a job
        self._kick_scheduled = False
        self.rejected = 0
        self.completed = 0
        self._closing = False

    @property
    def queued(self) -> int:
        return len(self._queue)

    @property
    def active(self) -> int:
        return self._active

    def submit(self, job: Job) -> None:
        """Queue ``job``; raises OverloadedError if the lane's queue is full."""
        cfg = self.config
        free_slots = max(0, cfg.max_concurrency - self._active)
        if self._closing or len(self._queue) - free_slots >= cfg.max_queue:
            self.rejected += 1
            raise OverloadedError(
                f"lane {self.name!r} is full ({cfg.max_queue} queued, {self._active} running)",
                hint="retry later or spread the load",
                lane=self.name,
            )
        self._queue.append(job)
        self._maybe_wake()

    def _maybe_wake(self) -> None:
        if self._waking or not self._queue or self._active >= self.config.max_concurrency:
            return
        self._waking += 1
        if self._idle:
            self._idle.pop().set_result(None)
        else:
            task = asyncio.get_running_loop().create_task(self._worker(), name=f"lane-{self.name}")
            self._workers.add(task)

    def _kick(self) -> None:
        if not self._kick_scheduled:
            self._kick_scheduled = True
            asyncio.get_running_loop().call_soon(self._on_kick)

    def _on_kick(self) -> None:
        self._kick_scheduled = False
        self._maybe_wake()

    async def _worker(self) -> None:
        task = asyncio.current_task()
        assert task is not None
        queue = self._queue
        try:
            while True:
                self._waking -= 1
                while queue:
                    job = queue.popleft()
                    if job.cancel_requested:
                        job.done = True
                        continue
                    if queue:
                        self._kick()  # if this job waits, another worker takes the rest
                    self._active += 1
                    job.task = task
                    try:
                        await job.run()
                    except asyncio.CancelledError:
                        if not job.cancel_requested or self._closing:
                            raise
                        task.uncancel()  # the request was cancelled, not this worker
                    finally:
                        job.task = None
                        job.done = True
                        self._active -= 1
                        self.completed += 1
                if self._closing or len(self._idle) >= self.config.idle_workers:
                    return
                parked = asyncio.get_running_loop().create_future()
                self._idle.append(parked)
                await parked
        finally:
            self._workers.discard(task)

    async def close(self) -> None:
        """Stop the lane: queued jobs are dropped, running handlers cancelled."""
        self._closing = True
        for job in self._queue:
            job.done = True
        self._queue.clear()
        for parked in self._idle:
            parked.cancel()
        self._idle.clear()
        workers = list(self._workers)
        for task in workers:
            task.cancel()
        if workers:
            await asyncio.gather(*workers, return_exceptions=True)
