"""The RPC benchmark's peers ship with feitian (issue 16, friction 9): the msgpack echo peer serves and answers
as the benchmark expects, on both event loops, and a peer that cannot run is reported as skipped with what to
install — never silently dropped."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys

import pytest

from feitian.bench.peers.msgpack_echo import BIG_THRESHOLD, MsgpackClient, start_server, stop_server


@pytest.mark.parametrize("loop", ["asyncio", "uvloop"])
async def test_msgpack_echo_peer_serves_in_its_own_process(loop: str) -> None:
    proc, port = start_server(loop)
    try:
        assert proc.poll() is None
        client = await MsgpackClient.connect(port)
        try:
            small = b"x" * 100
            assert await client.call("echo", small) == small
            big = bytes(BIG_THRESHOLD + 1)
            assert await client.call("echo", big) == len(big).to_bytes(8, "little")
            replies = await asyncio.gather(*(client.call("echo", str(i).encode()) for i in range(64)))
            assert replies == [str(i).encode() for i in range(64)]  # multiplexed by request id
        finally:
            await client.close()
    finally:
        stop_server(proc)
    assert proc.poll() is not None


def test_a_peer_without_msgpack_is_skipped_and_said() -> None:
    code = (
        "import sys, json; sys.modules['msgpack'] = None\n"  # as if msgpack were not installed
        "from feitian.bench.rpc import run_peers\n"
        "print(json.dumps(run_peers(0.1)))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=True)
    peers = json.loads(out.stdout)
    why = "msgpack is not installed (pip install 'feitian[bench]')"
    assert peers == {"asyncio_msgpack": {"skipped": why}, "uvloop_msgpack": {"skipped": why}}
    assert f"note: peer asyncio_msgpack skipped: {why}" in out.stderr
    server = subprocess.run(
        [sys.executable, "-c", code.split("\n")[0] + "\nfrom feitian.bench.peers.msgpack_echo import main\n"
         "sys.argv = ['msgpack_echo', 'serve']\nmain()"],
        capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    assert server.returncode == 1 and f"error: {why}" in server.stderr
