"""Real replica processes of the replicated key-value store, for tests and benchmarks.

``KvReplicas(directory, n)`` picks n free ports on 127.0.0.1, writes one node config per replica and runs each
as ``feitian node run kv`` (a real OS process with its own data directory). Replicas can be killed, frozen,
resumed and restarted on the same address and data; :meth:`stop` stops every process it started, by pid.
"""

from __future__ import annotations

import os
import signal
import socket
import sys
import time
from pathlib import Path

import tomli_w

from feitian.deploy.cluster import read_endpoint
from feitian.errors import UnavailableError
from feitian.runtime.procs import ProcessRef, is_running, signal_process, spawn_detached, stop_processes


def free_ports(n: int) -> list[int]:
    sockets = []
    try:
        for _ in range(n):
            s = socket.socket()
            s.bind(("127.0.0.1", 0))
            sockets.append(s)
        return [s.getsockname()[1] for s in sockets]
    finally:
        for s in sockets:
            s.close()


class KvReplicas:
    def __init__(
        self,
        directory: str | os.PathLike[str],
        n: int = 3,
        *,
        tick_ms: int = 50,
        election_ticks: int = 20,
        snapshot_every_entries: int = 20_000,
        keep_entries_after_snapshot: int = 5_000,
    ) -> None:
        self.dir = Path(directory)
        self.ids = list(range(1, n + 1))
        ports = free_ports(n)
        self.addresses = {i: f"tcp://127.0.0.1:{p}" for i, p in zip(self.ids, ports, strict=True)}
        self.refs: dict[int, ProcessRef] = {}
        self._all_refs: list[ProcessRef] = []
        for sub in ("conf", "logs", "run", "data"):
            (self.dir / sub).mkdir(parents=True, exist_ok=True)
        for i in self.ids:
            doc = {
                "node": {
                    "name": f"kv-{i}",
                    "role": "kv",
                    "listen": [self.addresses[i]],
                    "run_dir": str(self.dir / "run"),
                    "data_dir": str(self.dir / "data" / f"kv-{i}"),
                },
                "rpc": {"lanes": {"default": {}, "raft": {"max_concurrency": 64, "max_queue": 100_000}}},
                "role": {
                    "id": i,
                    "peers": {str(j): a for j, a in self.addresses.items()},
                    "tick_ms": tick_ms,
                    "election_ticks": election_ticks,
                    "snapshot_every_entries": snapshot_every_entries,
                    "keep_entries_after_snapshot": keep_entries_after_snapshot,
                },
            }
            (self.dir / "conf" / f"kv-{i}.toml").write_bytes(tomli_w.dumps(doc).encode())

    def log_path(self, i: int) -> str:
        return str(self.dir / "logs" / f"kv-{i}.log")

    def start(self, i: int, timeout_s: float = 30.0) -> ProcessRef:
        endpoint = self.dir / "run" / f"kv-{i}.json"
        if endpoint.exists():
            endpoint.unlink()
        config = str(self.dir / "conf" / f"kv-{i}.toml")
        argv = [sys.executable, "-m", "feitian", "node", "run", "kv", "--config", config]
        ref = spawn_detached(argv, self.log_path(i))
        self.refs[i] = ref
        self._all_refs.append(ref)
        deadline = time.monotonic() + timeout_s
        while True:
            info = read_endpoint(str(endpoint))
            if info is not None and info.pid == ref.pid:
                return ref
            if not is_running(ref):
                raise UnavailableError(f"kv-{i} exited during start-up; see {self.log_path(i)}")
            if time.monotonic() > deadline:
                raise UnavailableError(f"kv-{i} not serving after {timeout_s}s; see {self.log_path(i)}")
            time.sleep(0.01)

    def start_all(self) -> None:
        for i in self.ids:
            self.start(i)

    def kill(self, i: int) -> None:
        signal_process(self.refs[i], signal.SIGKILL)
        stop_processes([self.refs[i]], grace_s=5)

    def freeze(self, i: int) -> None:
        signal_process(self.refs[i], signal.SIGSTOP)

    def resume(self, i: int) -> None:
        signal_process(self.refs[i], signal.SIGCONT)

    def stop(self) -> list[ProcessRef]:
        """Stop every process ever started here; returns any that would not stop."""
        for ref in self._all_refs:
            signal_process(ref, signal.SIGCONT)
        return stop_processes(self._all_refs, grace_s=10)
