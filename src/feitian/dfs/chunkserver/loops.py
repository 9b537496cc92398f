"""A chunk server's background work: heartbeats and chunk reports to the master leader, and the scrubber.

* **Heartbeats** every ``heartbeat_interval_s``: usage, the replicas that changed since the last answered
  heartbeat (new, longer, new version), the ones deleted, and corrupt ones found. The answer says whether the
  leader wants a full chunk report (a new leader does) and which replicas to delete (garbage).
* **The scrubber** re-reads every replica at ``scrub_bytes_per_s`` at most, every ``scrub_interval_s``, and
  verifies each block's crc32c; a mismatch marks the replica corrupt and tells the master, which replaces it.

Both are :class:`~feitian.runtime.periodic.PeriodicTask` loops on the injected clock (a failed beat or pass is
logged and counted, the loop goes on), so a test drives them with a manual clock.
"""

from __future__ import annotations

import logging
from collections.abc import Callable

from feitian.base.clock import Clock
from feitian.dfs.chunkserver.service import ChunkService
from feitian.dfs.messages.master import ChunkReport, Heartbeat, HeartbeatReply
from feitian.errors import DataCorruptionError, NotFoundError
from feitian.replica import Router
from feitian.runtime.periodic import PeriodicTask

__all__ = ["HeartbeatLoop", "Scrubber"]

log = logging.getLogger(__name__)


class HeartbeatLoop:
    """Beats every ``interval_s`` from the start of one beat to the start of the next; the first at once."""

    def __init__(
        self,
        service: ChunkService,
        masters: Router,
        address: Callable[[], str],
        interval_s: float,
        *,
        clock: Clock,
    ) -> None:
        self.service = service
        self.masters = masters
        self.address = address
        self.interval_s = interval_s
        self.deleted: list[int] = []
        self.beats = 0
        self.task = PeriodicTask("heartbeat to the dfs master", self.beat, interval_s, clock=clock, logger=log)

    def start(self) -> None:
        self.task.start()

    async def stop(self) -> None:
        await self.task.stop()

    async def beat(self) -> None:
        service, store = self.service, self.service.store
        address = self.address()
        if not address:
            return  # the node is not serving yet
        capacity, used = store.usage()
        changed = store.take_changed()
        deleted, self.deleted = self.deleted, []
        corrupt = sorted(service.corrupt_found)
        request = Heartbeat(
            service.server_id, address, service.rack, capacity, used, tuple(changed), tuple(deleted), tuple(corrupt)
        )
        try:
            reply: HeartbeatReply = await self.masters.call(request, timeout_s=self.interval_s * 3)
        except BaseException:
            store.changed.update(r.chunk_id for r in changed)  # tell the next leader
            self.deleted = deleted + self.deleted
            raise
        service.corrupt_found.difference_update(corrupt)
        self.beats += 1
        if reply.full_report:
            store.changed.clear()
            await self.masters.call(
                ChunkReport(service.server_id, tuple(store.report())), timeout_s=self.interval_s * 3
            )
        if reply.delete:
            gone = await store.delete(reply.delete)
            if gone:
                log.info("deleted %d replicas the master no longer lists: %s", len(gone), gone[:20])
            absent = sorted(set(reply.delete) - set(gone))
            if absent:
                log.debug("asked to delete %d replicas this server does not hold: %s", len(absent), absent[:20])
            self.deleted.extend(reply.delete)  # all of them: the master stops asking once it hears they are gone


class Scrubber:
    """A pass ``interval_s`` after start, then ``interval_s`` after the end of each pass (a pass over a large
    store can take longer than the interval: the pause between passes stays). ``interval_s`` <= 0: off."""

    def __init__(self, service: ChunkService, interval_s: float, bytes_per_s: int, *, clock: Clock) -> None:
        self.service = service
        self.interval_s = interval_s
        self.bytes_per_s = max(1, bytes_per_s)
        self.clock = clock
        self.task = PeriodicTask(
            "scrub pass", self._pass, max(0.0, interval_s), clock=clock, delay_first=True, logger=log
        )

    def start(self) -> None:
        if self.interval_s > 0:
            self.task.start()

    async def stop(self) -> None:
        await self.task.stop()

    async def _pass(self) -> float:
        await self.scrub_all()
        return self.interval_s  # the next pass that long after this one ended

    async def scrub_all(self) -> list[int]:
        """One pass over every replica; returns the chunks found corrupt."""
        service, store = self.service, self.service.store
        found = []
        step = 1 << 20
        for chunk_id in sorted(store.chunks):
            chunk = store.chunks.get(chunk_id)
            if chunk is None or chunk.corrupt:
                continue
            started = self.clock.monotonic_ns()
            try:
                checked = await store.scrub(chunk_id, step)
            except NotFoundError:
                continue  # deleted meanwhile
            except DataCorruptionError as exc:
                log.error("scrubber: %s", exc)
                service.corrupt_found.add(chunk_id)
                found.append(chunk_id)
                continue
            service.scrubbed_bytes += checked
            pause = checked / self.bytes_per_s - (self.clock.monotonic_ns() - started) / 1e9
            if pause > 0:
                await self.clock.sleep(pause)
        service.scrub_passes += 1
        return found
