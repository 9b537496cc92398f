"""A chunk server's heartbeat loop (dfs/chunkserver/loops.py) on a manual clock: a real chunk store on disk, the
master leader replaced at the one call it makes (``Router.call``), no real waiting."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from feitian.dfs.chunkserver.loops import HeartbeatLoop, Scrubber
from feitian.dfs.chunkserver.service import ChunkService
from feitian.dfs.chunkserver.store import ChunkStore
from feitian.dfs.messages.master import ChunkReport, Heartbeat, HeartbeatReply
from feitian.errors import UnavailableError
from feitian.rpc import Client, ClientConfig
from feitian.testing.clock import ManualClock

_NS = 1_000_000_000


class Masters:
    """Answers heartbeats as a leader would; the first heartbeat asks for a full report, the third fails."""

    def __init__(self, clock: ManualClock) -> None:
        self.clock = clock
        self.calls: list[tuple[float, Any, float | None]] = []

    async def call(self, request: Any, timeout_s: float | None = None) -> Any:
        self.calls.append((self.clock.monotonic_ns() / _NS, request, timeout_s))
        if isinstance(request, Heartbeat):
            beats = sum(isinstance(r, Heartbeat) for _, r, _ in self.calls)
            if beats == 3:
                raise UnavailableError("no dfs master leader")
            return HeartbeatReply(full_report=beats == 1)
        return None


async def test_heartbeats_follow_the_injected_clock_and_a_failed_beat_does_not_stop_them(tmp_path: Path) -> None:
    clock = ManualClock(start_s=50.0)
    store = ChunkStore(tmp_path)
    await store.open()
    client = Client(ClientConfig(name="cs1"))
    service = ChunkService("cs1", "rack-a", store, client, clock=clock)
    masters = Masters(clock)
    loop = HeartbeatLoop(service, masters, lambda: "127.0.0.1:7000", 2.0, clock=clock)  # type: ignore[arg-type]
    try:
        loop.start()
        await clock.advance(9.0)
        beats = [(at, r) for at, r, _ in masters.calls if isinstance(r, Heartbeat)]
        assert [at for at, _ in beats] == [50.0, 52.0, 54.0, 56.0, 58.0]  # one every 2 s, on the clock
        assert all(r.server_id == "cs1" and r.address == "127.0.0.1:7000" for _, r in beats)
        assert all(timeout == 6.0 for _, _, timeout in masters.calls)  # three intervals
        reports = [at for at, r, _ in masters.calls if isinstance(r, ChunkReport)]
        assert reports == [50.0]  # asked for by the first answer only
        assert loop.beats == 4 and loop.task.errors == 1 and loop.task.runs == 5
    finally:
        await loop.stop()
        await store.close()
        await client.close()
    assert not loop.task.running


async def test_the_scrubber_waits_its_interval_after_each_pass_on_the_clock(tmp_path: Path) -> None:
    clock = ManualClock(start_s=0.0)
    store = ChunkStore(tmp_path)
    await store.open()
    client = Client(ClientConfig(name="cs1"))
    service = ChunkService("cs1", "rack-a", store, client, clock=clock)
    scrubber = Scrubber(service, 60.0, 1 << 20, clock=clock)
    try:
        scrubber.start()
        await clock.advance(59.0)
        assert service.scrub_passes == 0
        await clock.advance(1.0)
        assert service.scrub_passes == 1
        await clock.advance(120.0)
        assert service.scrub_passes == 3
    finally:
        await scrubber.stop()
        await store.close()
        await client.close()
    off = Scrubber(service, 0.0, 1 << 20, clock=clock)
    off.start()
    assert not off.task.running  # interval 0: the scrubber is off
