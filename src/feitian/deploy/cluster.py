"""A local cluster: real node processes on 127.0.0.1, managed from a directory.

Layout of a cluster directory::

    cluster.json        the state: every process started (name, role, pid + start time, addresses, log)
    conf/<name>.toml    each node's config
    logs/<name>.log     each node's stdout and stderr
    run/<name>.json     endpoint files written by serving nodes (and unix sockets)
    data/<name>/        each node's data

``up`` starts the nodes, waits until each answers its health check, and records them; ``down`` stops exactly the
processes recorded (by pid, verified by start time) and reports any that would not stop.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import sys
import time
from collections.abc import Callable, Sequence
from typing import Any

import msgspec
import tomli_w

from feitian import __version__
from feitian.deploy.node import EndpointFile
from feitian.errors import AlreadyExistsError, FeitianError, NotFoundError, UnavailableError
from feitian.rpc import Client, ClientConfig, Health, HealthReply, NuwaAddress
from feitian.runtime.eventloop import run
from feitian.runtime.procs import ProcessRef, is_running, spawn_detached, stop_processes

CLUSTER_FILE = "cluster.json"


class NodeSpec(msgspec.Struct, frozen=True):
    """One node to start: name, role, and the [rpc] / [role] sections of its config."""

    name: str
    role: str
    role_options: dict[str, Any] = {}
    rpc: dict[str, Any] = {}


class ProcessRecord(msgspec.Struct):
    name: str
    role: str
    pid: int
    start_time: int
    config: str
    log: str
    addresses: list[str] = []
    extra: dict[str, str] = {}

    @property
    def ref(self) -> ProcessRef:
        return ProcessRef(self.pid, self.start_time)


class ClusterState(msgspec.Struct):
    name: str
    dir: str
    version: str
    created_at: float
    processes: list[ProcessRecord] = []

    def find(self, name: str) -> ProcessRecord:
        for proc in self.processes:
            if proc.name == name:
                return proc
        raise NotFoundError(
            f"no process named {name!r} in the cluster at {self.dir}", hint="`feitian cluster status` lists them"
        )


class ProcessStatus(msgspec.Struct):
    name: str
    role: str
    pid: int
    state: str  # "ok", "degraded", "unreachable" (running, no health answer), "stopped"
    addresses: list[str]
    detail: str = ""


def default_spec(echo: int = 2, proxy: bool = True) -> list[NodeSpec]:
    """What ``feitian cluster up`` starts today; each component adds its nodes here."""
    specs = [NodeSpec(f"echo-{i + 1}", "echo") for i in range(echo)]
    if proxy:
        specs.append(NodeSpec("rpc-proxy-1", "rpc-proxy"))
    return specs


def default_cluster_dir() -> str:
    base = os.environ.get("XDG_DATA_HOME") or os.path.join(os.path.expanduser("~"), ".local", "share")
    return os.path.join(base, "feitian", "cluster")


def resolve_cluster_dir(option: str | None) -> str:
    """``--cluster DIR``, then ``$FEITIAN_CLUSTER``, then the default directory."""
    return os.path.abspath(option or os.environ.get("FEITIAN_CLUSTER") or default_cluster_dir())


class LocalCluster:
    def __init__(self, directory: str, name: str = "local") -> None:
        self.dir = os.path.abspath(directory)
        self.name = name
        self.state_path = os.path.join(self.dir, CLUSTER_FILE)

    # -- state -------------------------------------------------------------------------------------------------

    def load(self) -> ClusterState:
        try:
            with open(self.state_path, "rb") as f:
                return msgspec.json.decode(f.read(), type=ClusterState)
        except FileNotFoundError:
            raise NotFoundError(f"no cluster at {self.dir}", hint="start one with `feitian cluster up`") from None
        except msgspec.MsgspecError as exc:
            raise FeitianError(f"cluster state {self.state_path} is unreadable: {exc}") from None

    def _save(self, state: ClusterState) -> None:
        tmp = self.state_path + ".tmp"
        with open(tmp, "wb") as f:
            f.write(msgspec.json.format(msgspec.json.encode(state)))
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, self.state_path)

    # -- up ----------------------------------------------------------------------------------------------------

    def up(
        self,
        specs: Sequence[NodeSpec],
        timeout_s: float = 30.0,
        progress: Callable[[str], None] | None = None,
    ) -> ClusterState:
        say = progress or (lambda _msg: None)
        if os.path.exists(self.state_path):
            old = self.load()
            alive = [p.name for p in old.processes if is_running(p.ref)]
            if alive:
                raise AlreadyExistsError(
                    f"a cluster is already running at {self.dir} ({', '.join(alive)})",
                    hint="stop it with `feitian cluster down`, or use another --dir",
                )
        for sub in ("conf", "logs", "run", "data"):
            os.makedirs(os.path.join(self.dir, sub), exist_ok=True)
        state = ClusterState(self.name, self.dir, __version__, time.time())
        try:
            for spec in specs:
                state.processes.append(self._spawn(spec))
                say(f"started {spec.name} ({spec.role}) pid {state.processes[-1].pid}")
            self._save(state)
            run(self._wait_ready(state, timeout_s, say))
        except BaseException:
            say("start-up failed; stopping what was started")
            stop_processes([p.ref for p in state.processes], grace_s=5.0)
            with contextlib.suppress(OSError):
                os.unlink(self.state_path)
            raise
        self._save(state)
        return state

    def _spawn(self, spec: NodeSpec) -> ProcessRecord:
        conf = os.path.join(self.dir, "conf", f"{spec.name}.toml")
        log = os.path.join(self.dir, "logs", f"{spec.name}.log")
        run_dir = os.path.join(self.dir, "run")
        with contextlib.suppress(FileNotFoundError):
            os.unlink(os.path.join(run_dir, f"{spec.name}.json"))
        doc: dict[str, Any] = {
            "node": {
                "name": spec.name,
                "role": spec.role,
                "cluster": self.name,
                "listen": ["tcp://127.0.0.1:0"],
                "run_dir": run_dir,
                "data_dir": os.path.join(self.dir, "data", spec.name),
            },
        }
        if spec.rpc:
            doc["rpc"] = spec.rpc
        if spec.role_options:
            doc["role"] = spec.role_options
        with open(conf, "wb") as f:
            tomli_w.dump(doc, f)
        argv = [sys.executable, "-m", "feitian", "node", "run", spec.role, "--config", conf]
        ref = spawn_detached(argv, log)
        return ProcessRecord(spec.name, spec.role, ref.pid, ref.start_time, conf, log)

    async def _wait_ready(self, state: ClusterState, timeout_s: float, say: Callable[[str], None]) -> None:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout_s
        waiting = {p.name: p for p in state.processes}
        async with Client(ClientConfig(name="cluster-up", connect_timeout_s=0.5)) as client:
            while waiting:
                for name, proc in list(waiting.items()):
                    if not is_running(proc.ref):
                        raise UnavailableError(
                            f"{name} ({proc.role}) exited during start-up",
                            hint=f"its log {proc.log} ends with:\n{log_tail(proc.log)}",
                        )
                    endpoint = read_endpoint(os.path.join(self.dir, "run", f"{name}.json"))
                    if endpoint is None or endpoint.pid != proc.pid:
                        continue
                    try:
                        await client.call(endpoint.addresses[0], Health(), timeout=1.0)
                    except FeitianError:
                        continue
                    proc.addresses, proc.extra = endpoint.addresses, endpoint.extra
                    del waiting[name]
                    say(f"{name} ready at {' '.join(endpoint.addresses)}")
                if waiting:
                    if loop.time() > deadline:
                        raise UnavailableError(
                            f"not ready after {timeout_s:.0f}s: {', '.join(sorted(waiting))}",
                            hint="see the logs in " + os.path.join(self.dir, "logs"),
                        )
                    await asyncio.sleep(0.02)

    # -- status ------------------------------------------------------------------------------------------------

    def status(self, timeout_s: float = 2.0) -> list[ProcessStatus]:
        state = self.load()
        return run(self._status(state, timeout_s))

    async def _status(self, state: ClusterState, timeout_s: float) -> list[ProcessStatus]:
        async with Client(ClientConfig(name="cluster-status", connect_timeout_s=0)) as client:

            async def one(proc: ProcessRecord) -> ProcessStatus:
                if not is_running(proc.ref):
                    return ProcessStatus(proc.name, proc.role, proc.pid, "stopped", proc.addresses)
                try:
                    health: HealthReply = await client.call(proc.addresses[0], Health(), timeout=timeout_s)
                except FeitianError as exc:
                    return ProcessStatus(proc.name, proc.role, proc.pid, "unreachable", proc.addresses, str(exc))
                detail = f"up {health.uptime_s:.0f}s, version {health.version}"
                return ProcessStatus(proc.name, proc.role, proc.pid, health.status, proc.addresses, detail)

            return list(await asyncio.gather(*(one(p) for p in state.processes)))

    # -- down --------------------------------------------------------------------------------------------------

    def down(self, grace_s: float = 10.0) -> tuple[list[str], list[str]]:
        """Stop every recorded process. Returns (stopped names, names that would not stop)."""
        state = self.load()
        running = [p for p in state.processes if is_running(p.ref)]
        stuck_refs = stop_processes([p.ref for p in running], grace_s=grace_s)
        stuck = [p.name for p in running if p.ref in stuck_refs]
        stopped = [p.name for p in running if p.name not in stuck]
        if not stuck:
            os.unlink(self.state_path)
        return stopped, stuck


def read_endpoint(path: str) -> EndpointFile | None:
    try:
        with open(path, "rb") as f:
            return msgspec.json.decode(f.read(), type=EndpointFile)
    except (FileNotFoundError, msgspec.MsgspecError):
        return None


def log_tail(path: str, lines: int = 15) -> str:
    try:
        with open(path, "rb") as f:
            f.seek(0, os.SEEK_END)
            f.seek(max(0, f.tell() - 8192))
            text = f.read().decode("utf-8", "replace")
    except OSError:
        return "(no log)"
    return "\n".join("    " + line for line in text.splitlines()[-lines:])


class ClusterResolver:
    """Resolves ``nuwa://<cluster>/<role>`` to the addresses of the cluster's processes of that role, from
    the cluster state file. A stand-in for name resolution until the coordination service (Nuwa) is up."""

    def __init__(self, cluster: LocalCluster) -> None:
        self._cluster = cluster
        self.resolve_calls = 0

    async def resolve(self, address: NuwaAddress) -> list[str]:
        self.resolve_calls += 1
        state = self._cluster.load()
        if address.cluster != state.name:
            return []
        return [p.addresses[0] for p in state.processes if p.role == address.service and p.addresses]

    def watch(self, address: NuwaAddress, on_change: Callable[[], None]) -> Callable[[], None]:
        return lambda: None  # the state file has no notifications: failures trigger re-resolution
