"""etcd as the peer of ``feitian bench coord``: real etcd members on 127.0.0.1 started and stopped by pid, driven
through etcd's v3 JSON gateway (``/v3/kv/put``, ``/v3/kv/range``, ``/v3/watch``, ``/v3/lease/*``,
``/v3/lock/*``) with aiohttp, on the workload of ``feitian.bench.coord``.

Install it with ``apt-get install etcd-server``; :func:`find_etcd` says clearly when it is missing.
"""

from __future__ import annotations

import asyncio
import base64
import os
import shutil
import time
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

import aiohttp
import msgspec

from feitian.deploy import free_ports
from feitian.errors import NotFoundError, UnavailableError
from feitian.runtime.procs import ProcessRef, is_running, spawn_detached, stop_processes

__all__ = ["EtcdCluster", "EtcdDriver", "etcd_hold_lock", "find_etcd"]

_json = msgspec.json.Encoder()
_decode = msgspec.json.Decoder()


def find_etcd() -> str:
    path = shutil.which("etcd")
    if path is None:
        raise NotFoundError(
            "etcd is not installed: the benchmark cannot measure its peer",
            hint="apt-get install etcd-server (or put an etcd binary on PATH)",
        )
    return path


def b64(data: bytes | str) -> str:
    return base64.b64encode(data.encode() if isinstance(data, str) else data).decode()


class EtcdCluster:
    """``n`` etcd members on 127.0.0.1 with data under ``directory`` (fsync on, etcd's defaults)."""

    def __init__(self, directory: str, n: int = 3) -> None:
        self.binary = find_etcd()
        self.dir = directory
        ports = free_ports(2 * n)
        self.names = [f"m{i + 1}" for i in range(n)]
        self.client_urls = [f"http://127.0.0.1:{ports[i]}" for i in range(n)]
        self.peer_urls = [f"http://127.0.0.1:{ports[n + i]}" for i in range(n)]
        self.refs: list[ProcessRef] = []

    def start(self) -> None:
        initial = ",".join(f"{name}={url}" for name, url in zip(self.names, self.peer_urls, strict=True))
        for name, client, peer in zip(self.names, self.client_urls, self.peer_urls, strict=True):
            argv = [
                self.binary,
                "--name", name,
                "--data-dir", os.path.join(self.dir, name),
                "--listen-client-urls", client,
                "--advertise-client-urls", client,
                "--listen-peer-urls", peer,
                "--initial-advertise-peer-urls", peer,
                "--initial-cluster", initial,
                "--initial-cluster-state", "new",
                "--initial-cluster-token", "feitian-bench",
            ]  # fmt: skip
            self.refs.append(spawn_detached(argv, os.path.join(self.dir, f"{name}.log")))

    async def wait_ready(self, timeout_s: float = 30.0) -> str:
        """Wait until every member answers and one leads; returns the leader's client URL."""
        deadline = time.monotonic() + timeout_s
        async with aiohttp.ClientSession() as http:
            while True:
                for ref, name in zip(self.refs, self.names, strict=True):
                    if not is_running(ref):
                        raise UnavailableError(f"etcd member {name} exited", hint=f"see {self.dir}/{name}.log")
                leader = await self._leader(http)
                if leader:
                    return leader
                if time.monotonic() > deadline:
                    raise UnavailableError(f"etcd not ready after {timeout_s}s", hint=f"see the logs in {self.dir}")
                await asyncio.sleep(0.1)

    async def _leader(self, http: aiohttp.ClientSession) -> str:
        members: dict[str, str] = {}
        leader = ""
        for url in self.client_urls:
            try:
                async with http.post(url + "/v3/maintenance/status", data=b"{}", timeout=aiohttp.ClientTimeout(1)) as r:
                    status = await r.json()
            except (aiohttp.ClientError, TimeoutError):
                return ""
            members[status["header"]["member_id"]] = url
            leader = status.get("leader", "")
        return members.get(leader, "")

    def stop(self) -> list[ProcessRef]:
        return stop_processes(self.refs, grace_s=10)


async def _post(http: aiohttp.ClientSession, url: str, body: dict[str, Any]) -> Any:
    async with http.post(url, data=_json.encode(body)) as response:
        data = await response.read()
        if response.status != 200:
            raise UnavailableError(f"etcd {url}: HTTP {response.status}: {data[:200]!r}")
        return _decode.decode(data)


class EtcdDriver:
    """The benchmark workload against one etcd endpoint (the leader's: the cheapest path for etcd)."""

    name = "etcd"

    def __init__(self, endpoint: str, *, connections: int = 128) -> None:
        self.endpoint = endpoint
        self.http = aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=connections))
        self._watchers: list[aiohttp.ClientSession] = []
        self._lease = ""

    async def close(self) -> None:
        await self.http.close()
        for http in self._watchers:
            await http.close()

    async def prepare(self, keys: Sequence[str], value: bytes) -> None:
        await asyncio.gather(*(self.put(k, value) for k in keys))

    async def put(self, key: str, value: bytes) -> None:
        await _post(self.http, self.endpoint + "/v3/kv/put", {"key": b64(key), "value": b64(value)})

    async def get(self, key: str, *, linearizable: bool) -> None:
        body = {"key": b64(key), "serializable": not linearizable}
        await _post(self.http, self.endpoint + "/v3/kv/range", body)

    async def subscribe(self, key: str, on_event: Callable[[], None]) -> Callable[[], Awaitable[None]]:
        """Watch ``key`` from another client (its own HTTP session); returns a function that stops it."""
        http = aiohttp.ClientSession()
        self._watchers.append(http)
        response = await http.post(
            self.endpoint + "/v3/watch", data=_json.encode({"create_request": {"key": b64(key)}})
        )
        first = _decode.decode(await response.content.readline())
        if not first.get("result", {}).get("created"):
            raise UnavailableError(f"etcd watch not created: {first}")

        async def read() -> None:
            while line := await response.content.readline():
                if _decode.decode(line).get("result", {}).get("events"):
                    on_event()

        task = asyncio.get_running_loop().create_task(read())

        async def stop() -> None:
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)
            response.close()

        return stop

    async def _session_lease(self) -> str:
        if not self._lease:
            grant = await _post(self.http, self.endpoint + "/v3/lease/grant", {"TTL": 60})
            self._lease = grant["ID"]
        return self._lease

    async def lock_cycle(self, name: str) -> None:
        """Acquire and release etcd's lock ``name`` under this client's session lease (etcdctl lock does so)."""
        lease = await self._session_lease()
        held = await _post(self.http, self.endpoint + "/v3/lock/lock", {"name": b64(name), "lease": lease})
        await _post(self.http, self.endpoint + "/v3/lock/unlock", {"key": held["key"]})

    async def acquire(self, name: str) -> None:
        await self.lock_cycle(name)

    def holder_argv(self, name: str, ttl_ms: int) -> list[str]:
        return ["etcd", name, str(ttl_ms), self.endpoint]


async def etcd_hold_lock(endpoint: str, name: str, ttl_ms: int, ready: Callable[[], None]) -> None:
    """The lock holder of the failover measurement (in its own process): a lease of ``ttl_ms`` kept alive,
    etcd's lock ``name`` taken under it; then hold until killed."""
    ttl_s = max(1, round(ttl_ms / 1000))
    async with aiohttp.ClientSession() as http:
        grant = await _post(http, endpoint + "/v3/lease/grant", {"TTL": ttl_s})
        lease = grant["ID"]
        await _post(http, endpoint + "/v3/lock/lock", {"name": b64(name), "lease": lease})
        ready()
        while True:  # keep the lease alive (a keepalive is a stream; one request, one answer, then close)
            async with http.post(endpoint + "/v3/lease/keepalive", data=_json.encode({"ID": lease})) as response:
                await response.content.readline()
            await asyncio.sleep(ttl_s / 3)
