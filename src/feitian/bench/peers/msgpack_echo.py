"""A hand-rolled RPC peer: asyncio (or uvloop) streams + msgpack, one connection, requests multiplexed by id.

This is the baseline ``feitian bench rpc`` compares Kuafu with: what a Python programmer writes without an RPC
framework. A frame is a 4-byte little-endian length and ``msgpack([request_id, method, payload])``; a reply is a
length and ``msgpack([request_id, result])``. The server answers each request inline, as it is read (no task per
request); the client keeps a future per request id and one reader task. An echo service: a payload up to
``BIG_THRESHOLD`` bytes comes back as it is, a larger one is answered with its length (8 bytes), as Kuafu's
``echo.bytes`` answers the benchmark's 1 MiB uploads.

``python -m feitian.bench.peers.msgpack_echo serve --loop asyncio|uvloop`` listens on a free 127.0.0.1 port and
prints ``listening PORT`` once it does; :func:`run_peer` starts that server process, measures it from this
process with the same measurement as feitian's rows (``feitian.bench.rpc.measure_calls``), and stops it by pid.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import struct
import subprocess
import sys
from collections.abc import Awaitable, Callable
from typing import Any

__all__ = ["BIG_THRESHOLD", "PEERS", "MsgpackClient", "missing_requirement", "run_peer", "serve"]

HEADER = struct.Struct("<I")
BIG_THRESHOLD = 4096  # larger payloads are answered with their length, not echoed
READ_LIMIT = 8 << 20  # a stream reader's buffer: a 1 MiB frame fits
WRITE_HIGH_BYTES = 1 << 20  # drain the writer above this much buffered
START_TIMEOUT_S = 20.0
PEERS = {"asyncio_msgpack": "asyncio", "uvloop_msgpack": "uvloop"}  # row name -> event loop


def missing_requirement(loop: str) -> str:
    """Why the peer on ``loop`` cannot run here ("" if it can): a module it needs is not installed."""
    needed = ["msgpack"] + (["uvloop"] if loop == "uvloop" else [])
    for module in needed:
        try:
            __import__(module)
        except ImportError:
            return f"{module} is not installed (pip install 'feitian[bench]')"
    return ""


def _answer(payload: bytes) -> bytes:
    return len(payload).to_bytes(8, "little") if len(payload) > BIG_THRESHOLD else payload


async def _serve_connection(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    import msgpack

    packb, unpackb = msgpack.packb, msgpack.unpackb
    try:
        while True:
            (length,) = HEADER.unpack(await reader.readexactly(HEADER.size))
            request_id, _method, payload = unpackb(await reader.readexactly(length))
            body = packb([request_id, _answer(payload)])
            writer.write(HEADER.pack(len(body)) + body)
            if writer.transport.get_write_buffer_size() > WRITE_HIGH_BYTES:
                await writer.drain()
    except (asyncio.IncompleteReadError, ConnectionError):
        pass  # the client went away
    finally:
        writer.close()


async def serve(announce: Callable[[int], None]) -> None:
    """Serve on a free 127.0.0.1 port until cancelled; ``announce(port)`` once listening."""
    server = await asyncio.start_server(_serve_connection, "127.0.0.1", 0, limit=READ_LIMIT)
    announce(server.sockets[0].getsockname()[1])
    async with server:
        await server.serve_forever()


class MsgpackClient:
    """One connection to a peer server; calls multiplexed by request id."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        import msgpack

        self._packb, self._unpackb = msgpack.packb, msgpack.unpackb
        self._reader, self._writer = reader, writer
        self._pending: dict[int, asyncio.Future[Any]] = {}
        self._next_id = 0
        self._reading = asyncio.get_running_loop().create_task(self._read())

    @classmethod
    async def connect(cls, port: int) -> MsgpackClient:
        reader, writer = await asyncio.open_connection("127.0.0.1", port, limit=READ_LIMIT)
        return cls(reader, writer)

    async def _read(self) -> None:
        try:
            while True:
                (length,) = HEADER.unpack(await self._reader.readexactly(HEADER.size))
                request_id, result = self._unpackb(await self._reader.readexactly(length))
                future = self._pending.pop(request_id)
                if not future.done():
                    future.set_result(result)
        except (asyncio.IncompleteReadError, ConnectionError) as exc:
            for future in self._pending.values():
                if not future.done():
                    future.set_exception(ConnectionError(f"peer connection lost: {exc}"))

    async def call(self, method: str, payload: bytes) -> bytes:
        request_id = self._next_id
        self._next_id += 1
        future: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        self._pending[request_id] = future
        body = self._packb([request_id, method, payload])
        self._writer.write(HEADER.pack(len(body)) + body)
        if self._writer.transport.get_write_buffer_size() > WRITE_HIGH_BYTES:
            await self._writer.drain()
        result: bytes = await future
        return result

    async def close(self) -> None:
        self._reading.cancel()
        await asyncio.gather(self._reading, return_exceptions=True)
        self._writer.close()


def start_server(loop: str) -> tuple[subprocess.Popen[str], int]:
    """Start the peer's server process on ``loop``; returns it and its port once it listens."""
    proc = subprocess.Popen(
        [sys.executable, "-m", "feitian.bench.peers.msgpack_echo", "serve", "--loop", loop],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    assert proc.stdout is not None
    line = proc.stdout.readline()  # "listening PORT", or "" if it exited
    if not line.startswith("listening "):
        stop_server(proc)
        error = proc.stderr.read().strip().splitlines() if proc.stderr is not None else []
        raise RuntimeError(f"the {loop} peer server did not start: {error[-1] if error else 'no output'}")
    return proc, int(line.split()[1])


def stop_server(proc: subprocess.Popen[str]) -> None:
    """Stop the server we started, by its pid: SIGTERM, then SIGKILL if it does not go."""
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(10)


Measure = Callable[[Callable[[bytes, bytes | None], Awaitable[Any]], float], Awaitable[dict[str, Any]]]


def run_peer(loop: str, seconds: float, measure: Measure) -> dict[str, Any]:
    """The peer's figures on ``loop``, its server in a process of its own: ``measure(call, seconds)`` drives
    ``call(data, payload)`` (the peer has no separate payload: it sends ``payload or data``)."""
    proc, port = start_server(loop)
    try:

        async def go() -> dict[str, Any]:
            client = await MsgpackClient.connect(port)
            try:

                async def call(data: bytes, payload: bytes | None) -> Any:
                    return await client.call("echo", payload if payload is not None else data)

                return await measure(call, seconds)
            finally:
                await client.close()

        return _run_on(loop, go())
    finally:
        stop_server(proc)


def _run_on(loop: str, main: Awaitable[dict[str, Any]]) -> dict[str, Any]:
    async def wrapped() -> dict[str, Any]:
        return await main

    if loop == "uvloop":
        import uvloop

        result: dict[str, Any] = uvloop.run(wrapped())
        return result
    return asyncio.run(wrapped())


def main() -> None:
    parser = argparse.ArgumentParser(description="asyncio/uvloop + msgpack echo server (a feitian bench peer)")
    parser.add_argument("role", choices=["serve"])
    parser.add_argument("--loop", choices=sorted(set(PEERS.values())), default="asyncio")
    args = parser.parse_args()
    missing = missing_requirement(args.loop)
    if missing:
        sys.exit(f"error: {missing}")

    def announce(port: int) -> None:
        sys.stdout.write(f"listening {port}\n")
        sys.stdout.flush()

    with contextlib.suppress(KeyboardInterrupt):
        _run_on(args.loop, _forever(announce))


async def _forever(announce: Callable[[int], None]) -> dict[str, Any]:
    await serve(announce)
    return {}


if __name__ == "__main__":
    os.environ.setdefault("PYTHONUNBUFFERED", "1")
    main()
