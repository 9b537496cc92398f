"""Deadlines, cancellation, lanes and flow control, over real sockets."""

from __future__ import annotations

import asyncio

import pytest

from feitian.errors import DeadlineExceededError, OverloadedError
from feitian.rpc import CallContext, Client, ClientConfig, Echo, LaneConfig, Request, Server, ServerConfig
from feitian.rpc.context import current_deadline
from feitian.testing.rpc import serving
from feitian.testing.waiting import wait_for_condition


class Block(Request[str], frozen=True, tag="test.Block"):
    """Wait until the test releases the handler."""

    tag: str = ""


class Relay(Request[float], frozen=True, tag="test.Relay"):
    """Call another server; reply with the deadline the downstream handler saw (seconds left)."""

    target: str


class Probe(Request[float], frozen=True, tag="test.Probe"):
    pass


class Gate:
    """A handler that blocks until released, recording what happens to each call."""

    def __init__(self) -> None:
        self.release = asyncio.Event()
        self.started: list[str] = []
        self.cancelled: list[str] = []
        self.finished: list[str] = []

    async def block(self, ctx: CallContext, req: Block) -> str:
        self.started.append(req.tag)
        try:
            await self.release.wait()
        except asyncio.CancelledError:
            self.cancelled.append(req.tag)
            raise
        self.finished.append(req.tag)
        return req.tag


async def test_deadline_expires_and_the_server_stops_working() -> None:
    gate = Gate()
    server = Server()
    server.add_handler(Block, gate.block)
    async with serving(server) as (_, addr), Client() as client:
        with pytest.raises(DeadlineExceededError):
            await client.call(addr, Block("slow"), timeout=0.2)
        await wait_for_condition(lambda: gate.cancelled == ["slow"], what="handler cancelled on the server")
        gate.release.set()
        assert await client.call(addr, Block("fast"), timeout=5) == "fast"


async def test_deadline_is_carried_across_hops() -> None:
    seen: list[float] = []
    inner, outer = Server(ServerConfig(name="inner")), Server(ServerConfig(name="outer"))

    async def probe(ctx: CallContext, req: Probe) -> float:
        if ctx.deadline is None:
            return -1.0
        left = ctx.deadline - asyncio.get_running_loop().time()
        seen.append(left)
        return left

    async with serving(inner) as (_, inner_addr), Client() as hop_client:

        async def relay(ctx: CallContext, req: Relay) -> float:
            assert current_deadline.get() == ctx.deadline
            return await hop_client.call(req.target, Probe())  # no timeout given: inherits what is left

        inner.add_handler(Probe, probe)
        outer.add_handler(Relay, relay)
        async with serving(outer) as (_, outer_addr), Client() as client:
            left = await client.call(outer_addr, Relay(inner_addr), timeout=3.0)
            assert 0 < left <= 3.0
            assert seen == [left]
            # without a deadline at the first hop, none appears downstream
            assert await client.call(outer_addr, Relay(inner_addr)) == -1.0


async def test_cancelling_a_call_cancels_it_on_the_server() -> None:
    gate = Gate()
    server = Server()
    server.add_handler(Block, gate.block)
    async with serving(server) as (_, addr), Client() as client:
        handle = client.start(addr, Block("doomed"))
        await wait_for_condition(lambda: gate.started == ["doomed"], what="handler started")
        handle.cancel()
        with pytest.raises(asyncio.CancelledError):
            await handle
        await wait_for_condition(lambda: gate.cancelled == ["doomed"], what="cancel reached the server")
        gate.release.set()
        assert gate.finished == []


async def test_a_flood_in_one_lane_does_not_delay_another() -> None:
    """KUAFU-7: 'bulk' is saturated and its queue full; calls in the default lane still run at once."""
    gate = Gate()
    lanes = {"default": LaneConfig(), "bulk": LaneConfig(max_concurrency=2, max_queue=3)}
    server = Server(ServerConfig(lanes=lanes))
    server.add_handler(Block, gate.block, lane="bulk")
    async with serving(server) as (_, addr), Client() as flooder, Client() as other:
        floods = [flooder.start(addr, Block(f"bulk-{i}")) for i in range(20)]
        await wait_for_condition(lambda: sum(c.done() for c in floods) == 15, what="overflow refused")
        refused = [c for c in floods if c.done()]
        for call in refused:
            with pytest.raises(OverloadedError, match="lane 'bulk' is full"):
                call.result()
        assert len(gate.started) == 2  # 2 running + 3 queued; the other 15 refused at once, never run
        # The default lane answers while every bulk handler is still blocked.
        assert await other.call(addr, Echo(b"ping"), timeout=5) == b"ping"
        assert len(gate.started) == 2 and gate.finished == []
        gate.release.set()
        accepted = [c for c in floods if c not in refused]
        assert sorted([await c for c in accepted]) == sorted(gate.finished)
        assert len(gate.finished) == 5
        assert server.lane_stats()["bulk"]["rejected"] == 15


async def test_callers_can_be_routed_to_their_own_lane() -> None:
    gate = Gate()
    lanes = {"default": LaneConfig(max_concurrency=1, max_queue=0), "agents": LaneConfig(max_concurrency=4)}
    server = Server(ServerConfig(lanes=lanes))
    server.add_handler(Block, gate.block)
    server.route_caller("tubo-agent", "agents")
    async with (
        serving(server) as (_, addr),
        Client(ClientConfig(name="app")) as app,
        Client(ClientConfig(name="tubo-agent")) as agent,
    ):
        first = app.start(addr, Block("app-1"))
        await wait_for_condition(lambda: gate.started == ["app-1"], what="default lane busy")
        with pytest.raises(OverloadedError):
            await app.call(addr, Block("app-2"))
        agent_calls = [agent.start(addr, Block(f"agent-{i}")) for i in range(3)]
        await wait_for_condition(lambda: len(gate.started) == 4, what="agent lane serving despite default lane")
        gate.release.set()
        assert await first == "app-1"
        assert [await c for c in agent_calls] == ["agent-0", "agent-1", "agent-2"]


async def test_client_bounds_bytes_in_flight() -> None:
    gate = Gate()
    arrived: list[int] = []

    async def block(ctx: CallContext, req: Block) -> str:
        arrived.append(len(ctx.payload))
        return await gate.block(ctx, req)

    server = Server()
    server.add_handler(Block, block)
    cfg = ClientConfig(max_inflight_bytes=3 << 20)
    async with serving(server) as (_, addr), Client(cfg) as client:
        calls = [client.start(addr, Block(str(i)), payload=bytes(1 << 20)) for i in range(8)]
        await wait_for_condition(lambda: len(arrived) == 2, what="first calls arrive")
        conn = client._channels[addr].conn
        assert conn is not None and conn.inflight_bytes <= 3 << 20
        assert len(arrived) <= 3 and not any(c.done() for c in calls)
        gate.release.set()
        assert sorted([await c for c in calls]) == sorted(str(i) for i in range(8))
        assert conn.inflight_bytes == 0


async def test_server_stops_reading_a_connection_over_its_pending_bound() -> None:
    gate = Gate()
    arrived: list[int] = []

    async def block(ctx: CallContext, req: Block) -> str:
        arrived.append(1)
        return await gate.block(ctx, req)

    server = Server(ServerConfig(max_pending_bytes_per_connection=2 << 20))
    server.add_handler(Block, block)
    async with serving(server) as (_, addr), Client() as client:
        calls = [client.start(addr, Block(str(i)), payload=bytes(1 << 20)) for i in range(12)]
        await wait_for_condition(lambda: len(arrived) >= 2, what="some calls arrive")
        for _ in range(50):  # give the server every chance to read more than it should
            await asyncio.sleep(0)
        assert len(arrived) <= 3  # 2 MiB pending: the rest waits in TCP buffers
        gate.release.set()
        assert len([await c for c in calls]) == 12
