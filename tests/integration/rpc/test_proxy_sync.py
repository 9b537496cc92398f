"""The per-machine proxy (KUAFU-4) and the synchronous client (KUAFU-3)."""

from __future__ import annotations

import asyncio
import threading
from pathlib import Path

import pytest

from feitian.errors import ConnectionLostError, InvalidArgumentError, NotLeaderError
from feitian.rpc import CallContext, Client, ClientConfig, Echo, Health, Request, Server, ServerConfig
from feitian.rpc.proxy import Proxy, ProxyConfig
from feitian.rpc.sync import SyncClient
from feitian.testing.rpc import serving
from feitian.testing.waiting import wait_for_condition, wait_until


class Hold(Request[str], frozen=True, tag="test.Hold"):
    pass


class Refuse(Request[None], frozen=True, tag="test.Refuse"):
    pass


def holding_server() -> tuple[Server, asyncio.Event, list[str]]:
    release = asyncio.Event()
    events: list[str] = []
    server = Server(ServerConfig(name="upstream"))

    async def hold(ctx: CallContext, req: Hold) -> str:
        events.append(f"start:{ctx.peer.name}")
        try:
            await release.wait()
        except asyncio.CancelledError:
            events.append("cancelled")
            raise
        return "released"

    async def refuse(ctx: CallContext, req: Refuse) -> None:
        raise NotLeaderError("not me", leader_hint="tcp://elsewhere:1")

    server.add_handler(Hold, hold)
    server.add_handler(Refuse, refuse)
    return server, release, events


async def test_proxy_forwards_with_the_same_client_api(tmp_path: Path) -> None:
    sock = str(tmp_path / "kuafu.sock")
    server, release, events = holding_server()
    async with serving(server) as (srv, addr):
        proxy = Proxy(ProxyConfig(socket_path=sock))
        await proxy.start()
        try:
            cfg_a, cfg_b = ClientConfig(name="app-a", proxy_path=sock), ClientConfig(name="app-b", proxy_path=sock)
            async with Client(cfg_a) as a, Client(cfg_b) as b:
                assert await a.call(addr, Echo(b"via proxy")) == b"via proxy"
                reply = await b.call(addr, Echo(), payload=bytes(3 << 20))
                assert int.from_bytes(reply, "little") == 3 << 20
                with pytest.raises(NotLeaderError) as info:  # errors pass through with their fields
                    await a.call(addr, Refuse())
                assert info.value.leader_hint == "tcp://elsewhere:1"
                # Two programs, one TCP connection from the proxy to the server.
                assert proxy.upstream_count == 1 and proxy.client_count == 2
                assert len(srv._connections) == 1
                # Cancellation travels through the proxy to the server.
                held = a.start(addr, Hold())
                await wait_for_condition(lambda: events == ["start:rpc-proxy"], what="call reached server")
                held.cancel()
                await wait_for_condition(lambda: "cancelled" in events, what="cancel reached server")
                # Many concurrent calls from both programs are matched to the right callers.
                results = await asyncio.gather(
                    *(c.call(addr, Echo(f"{i}".encode())) for i in range(100) for c in (a, b))
                )
                assert results == [f"{i}".encode() for i in range(100) for _ in range(2)]
                release.set()
        finally:
            await proxy.stop()


async def test_proxy_reports_a_dead_target_and_a_lost_server(tmp_path: Path) -> None:
    sock = str(tmp_path / "kuafu.sock")
    proxy = Proxy(ProxyConfig(socket_path=sock, upstream=ClientConfig(name="rpc-proxy", connect_timeout_s=0.2)))
    await proxy.start()
    try:
        async with Client(ClientConfig(proxy_path=sock, connect_timeout_s=0.5)) as client:
            with pytest.raises(Exception, match="cannot connect"):
                await client.call("tcp://127.0.0.1:1", Health())
            server, _release, _ = holding_server()
            async with serving(server) as (_, addr):
                call = client.start(addr, Hold(), idempotent=False)
                await wait_for_condition(lambda: proxy.upstream_count == 1, what="upstream connected")
                await wait_for_condition(lambda: server.lane_stats()["default"]["active"] == 1, what="running")
                for conn in list(server._connections):
                    assert conn.transport is not None
                    conn.transport.abort()  # the server side of the proxy's connection breaks
                with pytest.raises(ConnectionLostError):
                    await call
                assert await client.call(addr, Echo(b"back")) == b"back"  # reconnected through the proxy
    finally:
        await proxy.stop()


async def test_proxy_refuses_a_hello_without_target(tmp_path: Path) -> None:
    sock = str(tmp_path / "kuafu.sock")
    proxy = Proxy(ProxyConfig(socket_path=sock))
    await proxy.start()
    try:
        async with Client(ClientConfig(connect_timeout_s=0)) as client:
            with pytest.raises(InvalidArgumentError, match="must name a target"):
                await client.call(f"unix://{sock}", Health())
    finally:
        await proxy.stop()


def test_sync_client_calls_and_handles() -> None:
    ready = threading.Event()
    state: dict[str, object] = {}

    def serve() -> None:
        async def main() -> None:
            stop = asyncio.Event()
            state["stop"], state["loop"] = stop, asyncio.get_running_loop()
            async with serving() as (_, addr):
                state["addr"] = addr
                ready.set()
                await stop.wait()

        asyncio.run(main())

    thread = threading.Thread(target=serve)
    thread.start()
    try:
        assert ready.wait(10)
        addr = str(state["addr"])
        with SyncClient(ClientConfig(name="script")) as client:
            assert client.call(addr, Echo(b"sync")) == b"sync"
            handles = [client.start(addr, Echo(str(i).encode())) for i in range(50)]
            assert [h.result(timeout=10) for h in handles] == [str(i).encode() for i in range(50)]
            wait_until(lambda: all(h.done() for h in handles))
            # shared by several threads
            out: list[bytes] = []
            threads = [threading.Thread(target=lambda: out.append(client.call(addr, Echo(b"t")))) for _ in range(8)]
            for t in threads:
                t.start()
            for t in threads:
                t.join()
            assert out == [b"t"] * 8
    finally:
        loop = state["loop"]
        assert isinstance(loop, asyncio.AbstractEventLoop)
        loop.call_soon_threadsafe(state["stop"].set)  # type: ignore[attr-defined]
        thread.join()


async def test_sync_client_refuses_to_block_a_running_event_loop() -> None:
    with pytest.raises(InvalidArgumentError, match="running an asyncio event loop") as info:
        SyncClient()
    assert info.value.hint and "await" in info.value.hint
