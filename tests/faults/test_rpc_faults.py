"""Kuafu against real server processes that are killed (SIGKILL) or frozen (SIGSTOP)."""

from __future__ import annotations

import os
import signal
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
import tomli_w

from feitian.deploy.cluster import free_ports, read_endpoint
from feitian.errors import ConnectionLostError, DeadlineExceededError
from feitian.rpc import Client, ClientConfig, Echo, Health
from feitian.runtime.procs import ProcessRef, signal_process, spawn_detached, stop_processes
from feitian.testing.waiting import wait_for_condition, wait_until


class EchoNode:
    """A real `feitian node run echo` process on a fixed port, restartable."""

    def __init__(self, tmp: Path) -> None:
        (self.port,) = free_ports(1)
        self.address = f"tcp://127.0.0.1:{self.port}"
        self.run_dir = tmp / "run"
        self.config = tmp / "echo.toml"
        self.log = str(tmp / "echo.log")
        doc = {"node": {"name": "echo-f", "role": "echo", "listen": [self.address], "run_dir": str(self.run_dir)}}
        self.config.write_bytes(tomli_w.dumps(doc).encode())
        self.refs: list[ProcessRef] = []

    def start(self) -> ProcessRef:
        endpoint = self.run_dir / "echo-f.json"
        if endpoint.exists():
            endpoint.unlink()
        ref = spawn_detached(
            [sys.executable, "-m", "feitian", "node", "run", "echo", "--config", str(self.config)], self.log
        )
        self.refs.append(ref)
        wait_until(
            lambda: (e := read_endpoint(str(endpoint))) is not None and e.pid == ref.pid, 30, "echo node serving"
        )
        return ref


@pytest.fixture
def node(tmp_path: Path) -> Iterator[EchoNode]:
    n = EchoNode(tmp_path)
    yield n
    for ref in n.refs:
        signal_process(ref, signal.SIGCONT)
    assert stop_processes(n.refs, grace_s=5) == []


async def test_sigkill_fails_calls_in_flight_then_the_client_reconnects(node: EchoNode) -> None:
    ref = node.start()
    async with Client(ClientConfig(connect_timeout_s=20)) as client:
        assert await client.call(node.address, Echo(b"before")) == b"before"
        big = os.urandom(8 << 20)
        calls = [client.start(node.address, Echo(), payload=big, idempotent=False) for _ in range(16)]
        signal_process(ref, signal.SIGKILL)
        outcomes = []
        for call in calls:
            try:
                await call
                outcomes.append("ok")
            except ConnectionLostError:
                outcomes.append("lost")
        assert "lost" in outcomes  # killed mid-transfer: a clear error, not a hang
        node.start()  # same address, new process
        assert await client.call(node.address, Echo(b"after"), timeout=20) == b"after"


async def test_sigstop_is_detected_by_keepalive(node: EchoNode) -> None:
    ref = node.start()
    cfg = ClientConfig(keepalive_interval_s=0.1, keepalive_timeout_s=0.6, connect_timeout_s=0.3)
    async with Client(cfg) as client:
        await client.call(node.address, Health())
        signal_process(ref, signal.SIGSTOP)
        try:
            with pytest.raises(ConnectionLostError, match="no data from the server"):
                await client.call(node.address, Echo(b"frozen"), idempotent=False)
            # the frozen server still accepts TCP (the kernel does), but never answers: deadlines bound it
            with pytest.raises((DeadlineExceededError, ConnectionLostError)):
                await client.call(node.address, Echo(b"frozen"), timeout=0.5, idempotent=False)
        finally:
            signal_process(ref, signal.SIGCONT)
        await wait_for_condition(lambda: _answers(client, node.address), timeout_s=20, what="server answers again")


async def _answers(client: Client, address: str) -> bool:
    try:
        return await client.call(address, Echo(b"x"), timeout=1) == b"x"
    except Exception:
        return False
