"""A local cluster: real node processes on 127.0.0.1, managed from a directory.

Layout of a cluster directory::

    cluster.json        the state: every process started (name, role, pid + start time, addresses, log)
    conf/<name>.toml    each node's config
    logs/<name>.log     each node's stdout and stderr
    run/<name>.json     endpoint files written by serving nodes (and unix sockets)
    data/<name>/        each node's data
    security/           the authority key, the CA, and every identity (security/authority/cluster.py)

``up`` starts the nodes, waits until each answers its health check, and records them; ``down`` stops exactly the
processes recorded (by pid, verified by start time) and reports any that would not stop. ``stop_nodes`` and
``start_nodes`` do the same for some nodes: a stopped node keeps its record, and starting it again records the new
pid and start time, on the addresses it had (``:0`` in its config is pinned to the port it got the first time).

A cluster is secured unless started with ``secure=False`` (``--insecure``): ``up`` creates the authority and the
identities, starts the ``authority`` node first, and gives every other node a ``[security]`` section naming its
identity and the authority's address, so every node serves mutual TLS only and checks every call.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import random
import socket
import sys
import time
import tomllib
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import msgspec
import tomli_w

from feitian import __version__
from feitian.deploy.node import EndpointFile
from feitian.errors import AlreadyExistsError, ConflictError, FeitianError, NotFoundError, UnavailableError
from feitian.rpc import Client, ClientConfig, Health, HealthReply, NuwaAddress, Resolver, Stats, StatsReply
from feitian.runtime.eventloop import run
from feitian.runtime.files import atomic_write
from feitian.runtime.procs import ProcessRef, is_running, spawn_detached, stop_processes
from feitian.security.authority import ClusterSecurity

CLUSTER_FILE = "cluster.json"
AUTHORITY = "authority"  # the authority node's name and role


class NodeSpec(msgspec.Struct, frozen=True):
    """One node to start: name, role, and the [rpc] / [role] sections of its config."""

    name: str
    role: str
    role_options: dict[str, Any] = {}
    rpc: dict[str, Any] = {}
    listen: list[str] = []  # fixed addresses (replicas must know each other's); default: a free port
    metrics: str = ""  # [node] metrics (serve /metrics here); default: `up` picks a free 127.0.0.1 port


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
    secure: bool = False  # nodes serve mutual TLS only and check every call

    @property
    def authority(self) -> str:
        """The authority's address ("" in an insecure cluster)."""
        return next((p.addresses[0] for p in self.processes if p.role == AUTHORITY and p.addresses), "")

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
    extra: dict[str, str] = {}  # what the node published besides its addresses (a coord replica's "rest" URL)
    stats: StatsReply | None = None  # the node's node.Stats reply (None: stopped, unreachable, or an older node)


def default_spec(
    echo: int = 2,
    proxy: bool = True,
    kv: int = 3,
    dfs_masters: int = 3,
    chunkservers: int = 4,
    coord: int = 3,
    *,
    secure: bool = True,
    fuxi_masters: int = 2,
    tubos: int | None = None,
) -> list[NodeSpec]:
    """What ``feitian cluster up`` starts today; each component adds its nodes here. Tubos default to one per
    chunk server, each posing as the same machine (its name and rack), so jobs can run where their data is."""
    nuwa = coord_specs(coord, rest_scheme="https" if secure else "http") if coord else []
    echo_options = {"coord": [s.listen[0] for s in nuwa]} if nuwa else {}  # echo nodes register in Nuwa
    specs = [NodeSpec(f"echo-{i + 1}", "echo", echo_options) for i in range(echo)]
    specs.extend(nuwa)
    if proxy:
        specs.append(NodeSpec("rpc-proxy-1", "rpc-proxy"))
    if kv:
        specs.extend(replica_specs("kv", kv))
    pangu = dfs_specs(dfs_masters, chunkservers) if dfs_masters else []
    specs.extend(pangu)
    tubos = (chunkservers if dfs_masters else 0) if tubos is None else tubos
    if fuxi_masters and nuwa and tubos:  # a resource manager without machines would have nothing to manage
        machines = [(f"chunkserver-{i + 1}", DFS_RACKS[i % len(DFS_RACKS)]) for i in range(tubos)]
        nuwa_addresses = [s.listen[0] for s in nuwa]
        # Tubos fetch packages: records in Nuwa, blobs in Pangu.
        pangu_masters = [s.listen[0] for s in pangu if s.role == "dfs-master"]
        packages = {"coord": nuwa_addresses, "dfs": pangu_masters} if pangu else {}
        specs.extend(fuxi_specs(fuxi_masters, nuwa_addresses, machines, tubo_options=packages))
    return specs


def fuxi_specs(
    masters: int,
    coord: list[str],
    machines: Sequence[tuple[str, str]],
    master_options: dict[str, Any] | None = None,
    tubo_options: dict[str, Any] | None = None,
) -> list[NodeSpec]:
    """Fuxi: ``masters`` FuxiMasters (elected through the Nuwa replicas ``coord``) and one Tubo per
    ``(machine name, rack)``, named ``tubo-1``…"""
    ports = free_ports(masters)
    addresses = [f"tcp://127.0.0.1:{port}" for port in ports]
    # Application masters' long polls wait in a lane of their own (like Nuwa's watches).
    lanes = {"lanes": {"default": {}, "fuxi.events": {"max_concurrency": 100_000, "max_queue": 10_000}}}
    specs = [
        NodeSpec(f"fuxi-master-{i + 1}", "fuxi-master", {"coord": coord, **(master_options or {})}, lanes, [address])
        for i, address in enumerate(addresses)
    ]
    for i, (machine, rack) in enumerate(machines):
        options = {"masters": addresses, "machine": machine, "rack": rack, **(tubo_options or {})}
        specs.append(NodeSpec(f"tubo-{i + 1}", "tubo", options))
    return specs


DFS_RACKS = ("r1", "r2", "r3")


def dfs_specs(
    masters: int,
    chunkservers: int,
    master_options: dict[str, Any] | None = None,
    chunkserver_options: dict[str, Any] | None = None,
    racks: Sequence[str] = DFS_RACKS,
) -> list[NodeSpec]:
    """Pangu: ``masters`` dfs-master replicas and ``chunkservers`` chunk servers on ``racks`` in turn
    (4 servers: r1, r2, r3, r1)."""
    specs = replica_specs("dfs-master", masters, master_options)
    addresses = [spec.listen[0] for spec in specs]
    bulk = {"lanes": {"default": {}, "bulk": {"max_concurrency": 64, "max_queue": 10_000}}}
    for i in range(chunkservers):
        options = {"masters": addresses, "rack": racks[i % len(racks)], **(chunkserver_options or {})}
        specs.append(NodeSpec(f"chunkserver-{i + 1}", "chunkserver", options, bulk))
    return specs


def coord_specs(n: int, role_options: dict[str, Any] | None = None, *, rest_scheme: str = "") -> list[NodeSpec]:
    """``n`` Nuwa (coord) replicas; besides consensus, long polls and heartbeats get lanes of their own. With a
    ``rest_scheme`` ("https" in a secured cluster, "http" otherwise) each also serves the REST API on a fixed
    port, and followers redirect writes to the leader's."""
    lanes = {"coord.watch": {"max_concurrency": 10_000, "max_queue": 10_000}, "coord.session": {}}
    options = dict(role_options or {})
    if rest_scheme:
        ports = free_ports(n)
        options["rest_peers"] = {str(i + 1): f"{rest_scheme}://127.0.0.1:{port}" for i, port in enumerate(ports)}
    specs = []
    for i, spec in enumerate(replica_specs("coord", n, options)):
        role = dict(spec.role_options)
        if rest_scheme:
            role["rest"] = f"tcp://127.0.0.1:{ports[i]}"
        specs.append(msgspec.structs.replace(spec, role_options=role, rpc={"lanes": {**spec.rpc["lanes"], **lanes}}))
    return specs


def replica_specs(role: str, n: int, role_options: dict[str, Any] | None = None) -> list[NodeSpec]:
    """``n`` replicas of a replicated role: fixed 127.0.0.1 ports chosen now (each replica's config names all
    of its peers), and a lane of their own for consensus traffic."""
    ports = free_ports(n)
    peers = {str(i + 1): f"tcp://127.0.0.1:{port}" for i, port in enumerate(ports)}
    rpc = {"lanes": {"default": {}, "raft": {"max_concurrency": 64, "max_queue": 100_000}}}
    return [
        NodeSpec(f"{role}-{i}", role, {**(role_options or {}), "id": i, "peers": peers}, rpc, [peers[str(i)]])
        for i in range(1, n + 1)
    ]


def with_metrics(specs: Sequence[NodeSpec]) -> list[NodeSpec]:
    """``specs``, each serving ``/metrics``: those without a ``metrics`` address get a free 127.0.0.1 port, fixed
    in its config so it stays the same when the node restarts."""
    ports = iter(free_ports(sum(1 for s in specs if not s.metrics)))
    return [s if s.metrics else msgspec.structs.replace(s, metrics=f"tcp://127.0.0.1:{next(ports)}") for s in specs]


def _ephemeral_range() -> tuple[int, int]:
    """The ports the kernel hands out for outgoing connections and for bind(0) (Linux's ip_local_port_range)."""
    try:
        with open("/proc/sys/net/ipv4/ip_local_port_range") as f:
            low, high = (int(x) for x in f.read().split())
        return low, high
    except (OSError, ValueError):
        return 32768, 60999


FIXED_PORT_RANGE = (20000, 32767)  # where fixed ports are drawn: below Linux's default ephemeral range


def free_ports(n: int) -> list[int]:
    """``n`` distinct TCP ports on 127.0.0.1, free now, for nodes to bind later.

    They are drawn from :data:`FIXED_PORT_RANGE`, outside the kernel's ephemeral range, when that does not overlap
    it: a port picked from the ephemeral range and released could be taken by any outgoing connection on the
    machine before the node binds it (a node then fails to start with "address in use"). Another program could
    still bind a picked port first; the range makes that unlikely, not impossible. A port this process handed out
    before is never handed out again (the nodes of one cluster are picked by several calls, none bound yet: a
    cluster of 18 nodes draws about 40 ports, and two calls would otherwise give the same one a few times in a
    hundred)."""
    low, high = FIXED_PORT_RANGE
    e_low, e_high = _ephemeral_range()
    if low <= e_high and e_low <= high:  # the ranges overlap: fall back to what the kernel picks
        return _kernel_picked_ports(n)
    rng = random.Random()
    chosen: list[int] = []
    for _ in range(n * 50):
        if len(chosen) == n:
            break
        port = rng.randint(low, high)
        if port in chosen or port in _HANDED_OUT:
            continue
        with socket.socket() as sock:
            try:
                sock.bind(("127.0.0.1", port))
            except OSError:
                continue
        chosen.append(port)
    if len(_HANDED_OUT) > MAX_REMEMBERED_PORTS:  # long handed out: bound by now, or given up
        _HANDED_OUT.clear()
    _HANDED_OUT.update(chosen)
    if len(chosen) < n:
        return chosen + _kernel_picked_ports(n - len(chosen))
    return chosen


_HANDED_OUT: set[int] = set()
MAX_REMEMBERED_PORTS = 4096


def _kernel_picked_ports(n: int) -> list[int]:
    sockets = []
    try:
        for _ in range(n):
            sock = socket.socket()
            sock.bind(("127.0.0.1", 0))
            sockets.append(sock)
        return [sock.getsockname()[1] for sock in sockets]
    finally:
        for sock in sockets:
            sock.close()


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
        self.security = ClusterSecurity(self.dir)
        self._security_options: dict[str, Any] = {}

    async def client(
        self,
        config: ClientConfig,
        *,
        state: ClusterState | None = None,
        identity: str | None = None,
        capability_files: Sequence[str] = (),
        auto_capabilities: bool = True,
        resolver: Resolver | None = None,
    ) -> Client:
        """A client for this cluster: as ``identity`` (default admin) with its capabilities when it is secured,
        a plain one otherwise."""
        state = state or self.load()
        if not state.secure:
            return Client(config, resolver=resolver)
        return await self.security.client(
            config,
            identity=identity,
            capability_files=capability_files,
            authority=state.authority,
            auto_capabilities=auto_capabilities,
            resolver=resolver,
        )

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
        atomic_write(self.state_path, msgspec.json.format(msgspec.json.encode(state)))

    # -- up ----------------------------------------------------------------------------------------------------

    def up(
        self,
        specs: Sequence[NodeSpec],
        timeout_s: float = 30.0,
        progress: Callable[[str], None] | None = None,
        *,
        secure: bool = True,
        security_options: dict[str, Any] | None = None,
    ) -> ClusterState:
        """Start ``specs`` (plus the authority when ``secure``); ``security_options`` are extra keys of every
        node's ``[security]`` section (e.g. a short ``revocation_max_staleness_s`` for tests)."""
        say = progress or (lambda _msg: None)
        self._security_options = dict(security_options or {})
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
        state = ClusterState(self.name, self.dir, __version__, time.time(), secure=secure)
        specs = list(specs)
        if secure:
            if not any(s.role == AUTHORITY for s in specs):
                specs.insert(0, NodeSpec(AUTHORITY, AUTHORITY))
            services = [(s.name, s.role) for s in specs]
            self.security.create(self.name, services, os.path.join(self.dir, "data", AUTHORITY))
            say(f"security: authority, CA and {len(services) + 1} identities in {self.security.dir}")
        else:
            say("WARNING: starting an insecure cluster: every node trusts every caller")
        specs = with_metrics(specs)
        try:
            first = [s for s in specs if s.role == AUTHORITY]  # the authority starts first; the others need it
            for group in (first, [s for s in specs if s.role != AUTHORITY]):
                started = []
                for spec in group:
                    record = self._spawn(spec, state)
                    started.append(record)
                    state.processes.append(record)
                    say(f"started {spec.name} ({spec.role}) pid {record.pid}")
                self._save(state)
                run(self._wait_ready(state, started, timeout_s, say))
        except BaseException:
            say("start-up failed; stopping what was started")
            stop_processes([p.ref for p in state.processes], grace_s=5.0)
            with contextlib.suppress(OSError):
                os.unlink(self.state_path)
            raise
        self._save(state)
        return state

    def _spawn(self, spec: NodeSpec, state: ClusterState) -> ProcessRecord:
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
                "listen": spec.listen or ["tcp://127.0.0.1:0"],
                "run_dir": run_dir,
                "data_dir": os.path.join(self.dir, "data", spec.name),
            },
        }
        if spec.metrics:
            doc["node"]["metrics"] = spec.metrics
        if spec.rpc:
            doc["rpc"] = spec.rpc
        if spec.role_options:
            doc["role"] = spec.role_options
        if state.secure:
            files = self.security.identity(spec.name)
            doc["security"] = {
                "key": str(files.key),
                "cert": str(files.cert),
                "ca": str(files.ca),
                "capabilities": str(files.capabilities),
                "authority": state.authority,
                **self._security_options,
            }
            if spec.role == AUTHORITY:
                doc["role"] = {"authority_key": str(self.security.authority_key), "ca_cert": str(self.security.ca)}
        with open(conf, "wb") as f:
            tomli_w.dump(doc, f)
        argv = [sys.executable, "-m", "feitian", "node", "run", spec.role, "--config", conf]
        ref = spawn_detached(argv, log)
        return ProcessRecord(spec.name, spec.role, ref.pid, ref.start_time, conf, log)

    async def _wait_ready(
        self, state: ClusterState, procs: list[ProcessRecord], timeout_s: float, say: Callable[[str], None]
    ) -> None:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout_s
        waiting = {p.name: p for p in procs}
        config = ClientConfig(name="cluster-up", connect_timeout_s=0.5)
        async with await self.client(config, state=state, auto_capabilities=False) as client:
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

    def restart(self, name: str, timeout_s: float = 30.0) -> ProcessRecord:
        """Start the named process again with its config (same addresses, same data); it must have stopped."""
        state = self.load()
        proc = state.find(name)
        if is_running(proc.ref):
            raise ConflictError(
                f"restart {name}: it is still running (pid {proc.pid})",
                hint="stop it first, or use `feitian cluster down`",
            )
        self._respawn(proc)
        self._save(state)
        run(self._wait_ready(state, [proc], timeout_s, lambda _msg: None))
        self._save(state)
        return proc

    # -- one node at a time ------------------------------------------------------------------------------------

    def find_nodes(self, state: ClusterState, names: Sequence[str]) -> list[ProcessRecord]:
        """The records of ``names`` (each once, in the order given); NotFoundError naming every unknown one."""
        known = {p.name: p for p in state.processes}
        unknown = [n for n in names if n not in known]
        if unknown:
            raise NotFoundError(
                f"no node named {', '.join(map(repr, unknown))} in the cluster at {self.dir}",
                hint=f"its nodes are: {', '.join(known)} (`feitian cluster status` shows them)",
            )
        return [known[n] for n in dict.fromkeys(names)]

    def stop_nodes(self, names: Sequence[str], grace_s: float = 10.0) -> tuple[list[str], list[str], list[str]]:
        """SIGTERM the named nodes, SIGKILL those still running after ``grace_s``, and wait until they are gone
        (verified by pid and start time). Their records stay, so ``status`` shows them stopped and ``start``
        brings them back. Returns (stopped, not running before, would not stop)."""
        state = self.load()
        procs = self.find_nodes(state, names)
        running = [p for p in procs if is_running(p.ref)]
        stuck_refs = stop_processes([p.ref for p in running], grace_s=grace_s)
        stuck = [p.name for p in running if p.ref in stuck_refs]
        stopped = [p.name for p in running if p.name not in stuck]
        return stopped, [p.name for p in procs if p not in running], stuck

    def start_nodes(
        self, names: Sequence[str], timeout_s: float = 30.0, progress: Callable[[str], None] | None = None
    ) -> tuple[list[ProcessRecord], list[str]]:
        """Start the named nodes again with their configs — the same addresses and data — wait until each is
        healthy, and record their new pid and start time. Nodes already running are left alone. Returns
        (started, already running)."""
        say = progress or (lambda _msg: None)
        state = self.load()
        procs = self.find_nodes(state, names)
        running = [p.name for p in procs if is_running(p.ref)]
        todo = [p for p in procs if p.name not in running]
        for proc in todo:
            self._check_not_adopted(proc)
        # The authority first, as in `up`: the others fetch their revocation list from it before serving.
        for group in ([p for p in todo if p.role == AUTHORITY], [p for p in todo if p.role != AUTHORITY]):
            if not group:
                continue
            for proc in group:
                self._respawn(proc)
                say(f"started {proc.name} ({proc.role}) pid {proc.pid}")
            self._save(state)
            run(self._wait_ready(state, group, timeout_s, say))
            self._save(state)
        return todo, running

    def _unrecorded(self, proc: ProcessRecord) -> str:
        """For a node whose recorded process is gone: a word on another live process serving as it (started by
        hand, with its config), which the cluster does not manage; "" if there is none."""
        endpoint = read_endpoint(os.path.join(self.dir, "run", f"{proc.name}.json"))
        if endpoint is None or endpoint.pid == proc.pid or not is_running(ProcessRef(endpoint.pid, 0)):
            return ""
        return f"pid {endpoint.pid} serves as {proc.name} but was not started by the cluster (by hand?)"

    def _check_not_adopted(self, proc: ProcessRecord) -> None:
        """Refuse to start a node while another process serves as it: a second copy would fight it for its ports
        and data."""
        if unrecorded := self._unrecorded(proc):
            raise ConflictError(
                f"start {proc.name}: {unrecorded}",
                hint=f"stop that process, then `feitian cluster start {proc.name}` (the cluster then manages it)",
            )

    def _respawn(self, proc: ProcessRecord) -> None:
        """Start ``proc`` again where it listened before (its peers and the cluster state name those addresses),
        with the same config and data; update its pid and start time."""
        with contextlib.suppress(FileNotFoundError):
            os.unlink(os.path.join(self.dir, "run", f"{proc.name}.json"))
        _pin_listen(proc)
        argv = [sys.executable, "-m", "feitian", "node", "run", proc.role, "--config", proc.config]
        ref = spawn_detached(argv, proc.log)
        proc.pid, proc.start_time = ref.pid, ref.start_time

    # -- status ------------------------------------------------------------------------------------------------

    def status(self, timeout_s: float = 2.0, identity: str | None = None) -> list[ProcessStatus]:
        state = self.load()
        return run(self._status(state, timeout_s, identity))

    async def _status(self, state: ClusterState, timeout_s: float, identity: str | None) -> list[ProcessStatus]:
        config = ClientConfig(name="cluster-status", connect_timeout_s=0)
        async with await self.client(config, state=state, identity=identity, auto_capabilities=False) as client:

            async def one(proc: ProcessRecord) -> ProcessStatus:
                def row(state: str, detail: str = "") -> ProcessStatus:
                    return ProcessStatus(proc.name, proc.role, proc.pid, state, proc.addresses, detail, proc.extra)

                if not is_running(proc.ref):
                    return row("stopped", self._unrecorded(proc))
                try:
                    stats: StatsReply = await client.call(proc.addresses[0], Stats(), timeout=timeout_s)
                except NotFoundError:  # a node of an older version, without node.Stats: ask kuafu.Health
                    try:
                        health: HealthReply = await client.call(proc.addresses[0], Health(), timeout=timeout_s)
                    except FeitianError as exc:
                        return row("unreachable", str(exc))
                    return row(health.status, f"up {health.uptime_s:.0f}s, version {health.version}")
                except FeitianError as exc:
                    return row("unreachable", str(exc))
                status = row(stats.status, stats_detail(stats))
                status.stats = stats
                return status

            return list(await asyncio.gather(*(one(p) for p in state.processes)))

    # -- down --------------------------------------------------------------------------------------------------

    def down(self, grace_s: float = 10.0) -> tuple[list[str], list[str]]:
        """Stop every recorded process. Returns (stopped names, names that would not stop)."""
        state = self.load()
        running = [p for p in state.processes if is_running(p.ref)]
        stuck_refs = stop_processes([p.ref for p in running], grace_s=grace_s)
        stuck = [p.name for p in running if p.ref in stuck_refs]
        from feitian.sched import default_cgroup_prefix, stop_started  # imported when used

        for proc in state.processes:  # what Tubos started outlives them by design: the cluster's end ends it
            if proc.role == "tubo" and proc.name not in stuck:
                root = Path(self.dir, "data", proc.name, "tubo")
                stop_started(root, default_cgroup_prefix(proc.name, root), grace_s=min(grace_s, 2.0))
        stopped = [p.name for p in running if p.name not in stuck]
        if not stuck:
            os.unlink(self.state_path)
        return stopped, stuck


def stats_detail(stats: StatsReply) -> str:
    """One line for humans: uptime, version, and a replica's place in its group ("leader, term 3")."""
    text = f"up {stats.uptime_s:.0f}s, version {stats.version}"
    if stats.replication is not None:
        text += f", {stats.replication.role.replace('_', '-')} in term {stats.replication.term}"
    return text


def _pin_listen(proc: ProcessRecord) -> None:
    """Make a node that was told to listen on any free port (``:0``) listen on the addresses it had, so that
    what names it — other nodes' configs (the authority's address), Nuwa, the state — stays true."""
    if not proc.addresses:
        return
    try:
        with open(proc.config, "rb") as f:
            doc = tomllib.load(f)
    except (OSError, tomllib.TOMLDecodeError) as exc:
        raise FeitianError(f"{proc.name}: cannot read its config {proc.config}: {exc}") from None
    listen = doc.get("node", {}).get("listen", [])
    if not any(isinstance(a, str) and a.endswith(":0") for a in listen):
        return
    doc["node"]["listen"] = list(proc.addresses)
    atomic_write(proc.config, tomli_w.dumps(doc).encode())


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
