"""A TCP fault-injecting proxy for partition tests between real replica processes.

Each directed *link* ``(src, dst)`` is a listening port on 127.0.0.1 that forwards to ``dst``'s real address.
Replica ``src`` is configured to send its consensus traffic for ``dst`` there (``ReplicaConfig.peer_addresses``;
``KvReplicas.route_peers``), so every replica-to-replica connection crosses exactly one link, and the test can::

    proxy = FaultProxy()
    routes = await proxy.route_replicas(addresses)     # {src: {dst: proxy address}} for every ordered pair
    rs.route_peers(routes); rs.start_all()
    proxy.isolate(leader)                  # cut every link from and to it: a partition
    proxy.partition({1}, {2, 3})           # the same, by groups
    proxy.link(1, 2).delay(0.05)           # add latency to one direction of initiation
    proxy.link(1, 2).drop_rate = 0.01      # abort 1 % of forwarded chunks' connections
    proxy.heal()                           # everything flows again
    await proxy.close()

A link carries both directions of the connections ``src`` opens (requests and their replies), so cutting
``(src, dst)`` alone stops ``src``'s messages to ``dst`` and ``dst``'s answers to them, while ``dst`` can still
reach ``src`` over ``(dst, src)``: a one-way partition.

**How a cut behaves** (``mode``):

* ``"blackhole"`` (default) — like a network partition: bytes sent into the link vanish, nothing comes back, and
  connections stay open, so the sender notices only by its own timeouts. New connections are accepted and
  swallowed. When the link heals, every connection that lost bytes is closed (its stream is no longer whole) and
  the peers reconnect.
* ``"reset"`` — like a crashed host that answers with RST: current connections are aborted and new ones are
  closed at once.

**Bounds.** Each direction of each connection buffers at most ``max_buffered_chunks`` chunks of at most
``chunk_bytes`` (reading stops meanwhile: TCP back-pressure), so a delayed link holds at most
``max_buffered_chunks * chunk_bytes`` per direction. The proxy runs on the caller's event loop; it forwards
tens of MB/s, far more than consensus traffic in tests needs.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
from collections.abc import Iterable

from feitian.rpc import TcpAddress, parse_address

log = logging.getLogger(__name__)

CHUNK_BYTES = 64 << 10
MAX_BUFFERED_CHUNKS = 256


class _Pipe:
    """One direction of one proxied connection: a reader task feeding a writer task through a bounded queue, so
    delays do not serialize chunks."""

    def __init__(self, link: Link, conn: _Connection, reader: asyncio.StreamReader, writer: asyncio.StreamWriter):
        self.link = link
        self.conn = conn
        self.reader = reader
        self.writer = writer
        self.queue: asyncio.Queue[tuple[float, bytes] | None] = asyncio.Queue(link.max_buffered_chunks)

    async def read_loop(self) -> None:
        loop = asyncio.get_running_loop()
        try:
            while True:
                data = await self.reader.read(self.link.chunk_bytes)
                if not data:
                    break
                if self.link.cut_mode is not None:
                    self.conn.tainted = True  # swallowed: the stream is no longer whole
                    self.link.bytes_dropped += len(data)
                    continue
                if self.link.drop_rate and self.link.rng.random() < self.link.drop_rate:
                    self.link.connections_dropped += 1
                    self.conn.abort()
                    return
                await self.queue.put((loop.time() + self.link.delay_s, data))
        except (ConnectionError, OSError):
            pass
        await self.queue.put(None)

    async def write_loop(self) -> None:
        loop = asyncio.get_running_loop()
        try:
            while (item := await self.queue.get()) is not None:
                deliver_at, data = item
                wait = deliver_at - loop.time()
                if wait > 0:
                    await asyncio.sleep(wait)
                if self.link.cut_mode is not None:
                    self.conn.tainted = True
                    self.link.bytes_dropped += len(data)
                    continue
                self.writer.write(data)
                self.link.bytes_forwarded += len(data)
                await self.writer.drain()
            if self.writer.can_write_eof():
                self.writer.write_eof()
        except (ConnectionError, OSError):
            self.conn.abort()


class _Connection:
    def __init__(self, link: Link, client: asyncio.StreamWriter) -> None:
        self.link = link
        self.client = client
        self.upstream: asyncio.StreamWriter | None = None
        self.tainted = False
        self.tasks: list[asyncio.Task[None]] = []

    def abort(self) -> None:
        for writer in (self.client, self.upstream):
            if writer is not None:
                writer.transport.abort()
        for task in self.tasks:
            if task is not asyncio.current_task():
                task.cancel()


class Link:
    """One directed link: a listening port forwarding to ``target``. See the module docstring."""

    def __init__(
        self,
        name: str,
        target: str,
        *,
        rng: random.Random,
        chunk_bytes: int = CHUNK_BYTES,
        max_buffered_chunks: int = MAX_BUFFERED_CHUNKS,
    ) -> None:
        parsed = parse_address(target)
        if not isinstance(parsed, TcpAddress):
            raise ValueError(f"link {name}: target must be tcp://host:port, got {target!r}")
        self.name = name
        self.target = parsed
        self.rng = rng
        self.chunk_bytes = chunk_bytes
        self.max_buffered_chunks = max_buffered_chunks
        self.cut_mode: str | None = None  # None: open; "blackhole" or "reset"
        self.delay_s = 0.0
        self.drop_rate = 0.0  # probability per forwarded chunk that its connection is aborted
        self.bytes_forwarded = 0
        self.bytes_dropped = 0
        self.connections_accepted = 0
        self.connections_dropped = 0
        self._connections: set[_Connection] = set()
        self._server: asyncio.Server | None = None
        self.address = ""

    async def start(self, host: str = "127.0.0.1") -> str:
        self._server = await asyncio.start_server(self._accept, host, 0)
        port = self._server.sockets[0].getsockname()[1]
        self.address = f"tcp://{host}:{port}"
        return self.address

    def cut(self, mode: str = "blackhole") -> None:
        if mode not in ("blackhole", "reset"):
            raise ValueError(f"cut mode must be 'blackhole' or 'reset', got {mode!r}")
        self.cut_mode = mode
        if mode == "reset":
            self.drop_connections()

    def heal(self) -> None:
        """Let traffic flow again; connections that lost bytes while cut are closed so peers reconnect cleanly."""
        self.cut_mode = None
        for conn in list(self._connections):
            if conn.tainted:
                conn.abort()

    def delay(self, seconds: float) -> None:
        """Deliver every chunk ``seconds`` after it was read (order preserved)."""
        self.delay_s = max(0.0, seconds)

    def drop_connections(self) -> None:
        """Abort every connection on this link now (peers see a reset and reconnect)."""
        for conn in list(self._connections):
            self.connections_dropped += 1
            conn.abort()

    async def close(self) -> None:
        if self._server is not None:
            self._server.close()
        self.drop_connections()
        tasks = [t for conn in self._connections for t in conn.tasks]
        await asyncio.gather(*tasks, return_exceptions=True)
        if self._server is not None:
            await self._server.wait_closed()

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections_accepted += 1
        conn = _Connection(self, writer)
        if self.cut_mode == "reset":
            writer.transport.abort()
            return
        self._connections.add(conn)
        try:
            if self.cut_mode == "blackhole":
                conn.tainted = True
                while await reader.read(self.chunk_bytes):  # swallow until healed (then aborted) or closed
                    pass
                return
            try:
                up_reader, up_writer = await asyncio.open_connection(self.target.host, self.target.port)
            except OSError as exc:
                log.debug("link %s: cannot reach %s: %s", self.name, self.target, exc)
                writer.transport.abort()
                return
            conn.upstream = up_writer
            out = _Pipe(self, conn, reader, up_writer)
            back = _Pipe(self, conn, up_reader, writer)
            loop = asyncio.get_running_loop()
            conn.tasks = [
                loop.create_task(out.read_loop()),
                loop.create_task(out.write_loop()),
                loop.create_task(back.read_loop()),
                loop.create_task(back.write_loop()),
            ]
            await asyncio.gather(*conn.tasks, return_exceptions=True)
        except (ConnectionError, OSError):
            pass
        finally:
            self._connections.discard(conn)
            conn.abort()
            with contextlib.suppress(Exception):
                writer.close()


class FaultProxy:
    """Directed links between named nodes (replica ids). See the module docstring."""

    def __init__(self, *, seed: int = 0, host: str = "127.0.0.1") -> None:
        self.rng = random.Random(seed)
        self.host = host
        self.links: dict[tuple[int, int], Link] = {}

    async def add_link(self, src: int, dst: int, target: str) -> str:
        """Start the link ``src -> dst`` forwarding to ``target``; returns the address ``src`` should dial."""
        if (src, dst) in self.links:
            raise ValueError(f"link {src}->{dst} exists")
        link = Link(f"{src}->{dst}", target, rng=random.Random(self.rng.random()))
        self.links[(src, dst)] = link
        return await link.start(self.host)

    async def route_replicas(self, addresses: dict[int, str]) -> dict[int, dict[int, str]]:
        """A link for every ordered pair of replicas; returns ``{src: {dst: address to dial}}``."""
        routes: dict[int, dict[int, str]] = {i: {} for i in addresses}
        for src in addresses:
            for dst, target in addresses.items():
                if src != dst:
                    routes[src][dst] = await self.add_link(src, dst, target)
        return routes

    def link(self, src: int, dst: int) -> Link:
        return self.links[(src, dst)]

    def isolate(self, node: int, mode: str = "blackhole") -> None:
        """Cut every link from and to ``node``."""
        for (src, dst), link in self.links.items():
            if node in (src, dst):
                link.cut(mode)

    def partition(self, *groups: Iterable[int], mode: str = "blackhole") -> None:
        """Cut every link between different groups; links within a group are healed."""
        where: dict[int, int] = {}
        for g, members in enumerate(groups):
            for member in members:
                where[member] = g
        for (src, dst), link in self.links.items():
            if where.get(src, -1) != where.get(dst, -2):
                link.cut(mode)
            else:
                link.heal()

    def heal(self) -> None:
        for link in self.links.values():
            link.heal()

    async def close(self) -> None:
        await asyncio.gather(*(link.close() for link in self.links.values()))
