"""``feitian demo``: the README's main job — a local cluster, a tour of what works, and a clean shutdown."""

from __future__ import annotations

import asyncio
import os
import secrets
import shutil
import signal
import tempfile
import time

import click

from feitian.cli.demo_fuxi import fuxi_tour
from feitian.cli.demo_jobs import jobs_tour
from feitian.cli.demo_nuwa import nuwa_tour, service_resolver
from feitian.cli.demo_pangu import pangu_tour
from feitian.cli.output import note
from feitian.deploy import ClusterResolver, ClusterState, LocalCluster, default_spec
from feitian.errors import FeitianError
from feitian.examples import KvClient, Stats
from feitian.rpc import Client, ClientConfig, Echo, Health
from feitian.runtime.eventloop import run
from feitian.runtime.procs import signal_process
from feitian.security import create_identity_files, load_public_key
from feitian.security.authority import AddPrincipal, PolicyGrant, Revoke


def say(text: str) -> None:
    click.echo(text)


async def tour(lc: LocalCluster, state: ClusterState) -> None:
    procs = {p.name: p for p in state.processes}
    echo1, echo2 = procs["echo-1"].addresses[0], procs["echo-2"].addresses[0]
    proxy_sock = procs["rpc-proxy-1"].extra["socket"]
    resolver = ClusterResolver(lc)
    async with await lc.client(ClientConfig(name="demo"), state=state, resolver=resolver) as client:
        say("\n== Kuafu RPC over mutual TLS, as the cluster's admin identity ==")
        for p in state.processes:
            h = await client.call(p.addresses[0], Health(), timeout=5)
            say(f"  health {p.name:12} -> {h.status} (role {h.role}, pid {h.pid})")
        reply = await client.call(echo1, Echo(b"hello, feitian"), timeout=5)
        say(f"  Echo(b'hello, feitian') at echo-1 -> {reply!r}")
        say(f"  echo.text 'bonjour' -> {await client.call_text(echo1, 'echo.text', 'bonjour', timeout=5)!r}")
        say(f"  echo.map {{k: v}}   -> {await client.call_map(echo2, 'echo.map', {'k': 'v'}, timeout=5)}")
        say(f"  echo.whoami        -> {await client.call_text(echo1, 'echo.whoami', '', timeout=5)}")

        say("\n== Asynchronous calls: 100 started at once, collected later ==")
        t0 = time.perf_counter()
        handles = [client.start(echo1, Echo(f"call-{i}".encode())) for i in range(100)]
        say(
            f"  started 100 calls in {(time.perf_counter() - t0) * 1000:.2f} ms; done so far: "
            f"{sum(h.done() for h in handles)}"
        )
        results = [await h for h in handles]
        say(
            f"  collected {len(results)} replies, all correct: "
            f"{all(r == f'call-{i}'.encode() for i, r in enumerate(results))}"
        )

        say("\n== Bulk data: 64 MiB in 1 MiB payloads, 8 in flight (encrypted) ==")
        chunk = os.urandom(1 << 20)
        t0 = time.perf_counter()
        sem = asyncio.Semaphore(8)

        async def put() -> bytes:
            async with sem:
                return await client.call(echo1, Echo(), payload=chunk, timeout=30)

        acks = await asyncio.gather(*(put() for _ in range(64)))
        dt = time.perf_counter() - t0
        ok = all(int.from_bytes(a, "little") == len(chunk) for a in acks)
        say(f"  64 MiB sent in {dt:.3f} s = {64 * 1.048576 / dt:.0f} MB/s; every length acknowledged: {ok}")

        say("\n== Zhongkui: service-to-service calls are checked like users' ==")
        relayed = await client.call_map(echo1, "echo.relay", {"target": "echo-2", "text": "via echo-1"}, timeout=5)
        say(f"  echo-1 calls echo.text on echo-2 as itself -> {relayed['reply']!r}")
        try:
            await client.call_map(echo1, "echo.relay", {"target": "echo-2", "method": "echo.whoami"}, timeout=5)
        except FeitianError as exc:
            say(f"  echo-1 calls echo.whoami on echo-2 -> refused: {type(exc).__name__} [{exc.fields.get('reason')}]")
        if state.secure:
            await _guest_tour(lc, state, echo1)

    say("\n== The per-machine proxy ==")
    try:
        async with Client(ClientConfig(name="demo-via-proxy", proxy_path=proxy_sock)) as pclient:
            got = await pclient.call_map(echo2, "echo.map", {"via": "proxy"}, timeout=5)
            say(f"  via {proxy_sock}: echo.map -> {got}")
    except FeitianError as exc:
        say(f"  refused in a secured cluster: {exc.message} [{exc.fields.get('reason')}]")

    await nuwa_tour(lc, state)

    say("\n== nuwa:// addressing: load balancing and failover ==")
    config = ClientConfig(name="demo-nuwa", connect_timeout_s=0.5)
    async with (
        service_resolver(lc, state) as service_names,
        await lc.client(config, state=state, resolver=service_names) as client,
    ):
        served = [
            (await client.call_map("nuwa://local/echo", "echo.map", {}, timeout=5, idempotent=True))["served_by"]
            for _ in range(6)
        ]
        say(f"  6 calls to nuwa://local/echo served by: {', '.join(served)}")
        victim = procs["echo-2"]
        signal_process(victim.ref, signal.SIGKILL)
        say(f"  killed echo-2 (pid {victim.pid}) with SIGKILL")
        served = []
        for _ in range(6):
            try:
                served.append(
                    (await client.call_map("nuwa://local/echo", "echo.map", {}, timeout=5, idempotent=True))[
                        "served_by"
                    ]
                )
            except FeitianError as exc:
                served.append(f"<{type(exc).__name__}>")
        say(f"  6 more calls served by: {', '.join(served)}")

    await _consensus_tour(lc, state)
    await fuxi_tour(lc, state)
    await jobs_tour(lc, state)
    await pangu_tour(lc, state)


async def _consensus_tour(lc: LocalCluster, state: ClusterState) -> None:
    """The replicated log: writes survive SIGKILL of the leader; the old leader catches up when it returns."""
    replicas = [p for p in state.processes if p.role == "kv"]
    if len(replicas) < 3:
        return
    say("\n== Consensus: a key-value store replicated on 3 processes (Raft, fsync on every write) ==")
    config = ClientConfig(name="demo-kv", connect_timeout_s=0.5)
    async with await lc.client(config, state=state) as client:
        kv = KvClient(client, [p.addresses[0] for p in replicas], timeout_s=20)
        t0 = time.perf_counter()
        for i in range(200):
            await kv.put(f"before-{i}", b"x")
        say(f"  200 writes, one at a time, each on disk on a majority: {(time.perf_counter() - t0) * 1000:.0f} ms")
        stats = {p.name: await client.call(p.addresses[0], Stats(), timeout=5) for p in replicas}
        leader = next(p for p in replicas if stats[p.name].role == "leader")
        say(f"  leader: {leader.name} (term {stats[leader.name].term}); killing it with SIGKILL")
        signal_process(leader.ref, signal.SIGKILL)
        t0 = time.perf_counter()
        await kv.put("after-0", b"y", retry_lost=True)
        say(
            f"  first write after the kill acknowledged in {(time.perf_counter() - t0) * 1000:.0f} ms "
            f"(election included)"
        )
        for i in range(1, 200):
            await kv.put(f"after-{i}", b"y", retry_lost=True)
        found = [(await kv.get(f"before-{i}")).found for i in range(200)]
        say(f"  all 200 writes from before the kill readable (linearizable reads): {all(found)}")
        await asyncio.to_thread(lc.restart, leader.name)
        say(f"  restarted {leader.name} on its old address and data")
        target = (await client.call(kv.leader or replicas[0].addresses[0], Stats(), timeout=5)).commit_index
        back = next(p for p in lc.load().processes if p.name == leader.name)
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            try:
                caught_up = await client.call(back.addresses[0], Stats(), timeout=2)
                if caught_up.applied_index >= target:
                    say(f"  {leader.name} caught up: applied index {caught_up.applied_index}, now a {caught_up.role}")
                    break
            except FeitianError:
                pass
            await asyncio.sleep(0.05)


async def _guest_tour(lc: LocalCluster, state: ClusterState, echo1: str) -> None:
    """A new user: refused without a capability, allowed once the policy grants one, refused once revoked."""
    say("\n== Zhongkui: a new user, the policy, capabilities and revocation ==")
    folder = lc.security.identities
    guest = f"guest-{secrets.token_hex(2)}"  # a new one each run (a reused directory keeps old revocations)
    create_identity_files(folder, guest)
    async with await lc.client(ClientConfig(name="demo-admin"), state=state) as admin:
        reply = await admin.call(state.authority, AddPrincipal(guest, load_public_key(folder / f"{guest}.pub").key))
        (folder / f"{guest}.crt").write_bytes(reply.certificate_pem)
        say(f"  registered user {guest} ({reply.principal.id})")

        async def as_guest() -> str:
            async with await lc.client(ClientConfig(name="demo-guest"), state=state, identity=guest) as client:
                return await client.call_text(echo1, "echo.text", f"hello as {guest}", timeout=5)

        try:
            await as_guest()
        except FeitianError as exc:
            say(f"  {guest} calls echo.text -> refused: {exc.message} [{exc.fields.get('reason')}]")
        await admin.call(state.authority, PolicyGrant(guest, ("echo:/text",), ("read",)))
        (folder / f"{guest}.caps").unlink(missing_ok=True)  # its next client asks the authority for capabilities
        say(f"  policy grant {guest} read echo:/text; {guest} calls echo.text -> {await as_guest()!r}")
        await admin.call(state.authority, Revoke(holder=guest))
        try:
            await as_guest()
        except FeitianError as exc:
            say(f"  cap revoke --holder {guest}; {guest} calls echo.text -> refused [{exc.fields.get('reason')}]")


@click.command()
@click.option("--dir", "directory", metavar="DIR", default=None, help="Cluster directory (default: a temp dir).")
@click.option("--keep", is_flag=True, help="Leave the cluster running afterwards.")
def demo(directory: str | None, keep: bool) -> None:
    """Start a local cluster, show what feitian does today, and stop it again."""
    tmp = None
    if directory is None:
        tmp = tempfile.mkdtemp(prefix="feitian-demo-")
        directory = tmp
    lc = LocalCluster(directory)
    say(f"== Starting a local cluster in {directory} ==")
    state = lc.up(default_spec(echo=2, proxy=True), progress=note)
    for p in state.processes:
        say(f"  {p.name:12} {p.role:10} pid {p.pid:<7} {' '.join(p.addresses)}")
    ok = False
    try:
        run(tour(lc, state))
        ok = True
    finally:
        if keep:
            say(f"\ncluster left running; stop it with: feitian cluster down --cluster {directory}")
        else:
            stopped, stuck = lc.down()
            say(f"\n== Stopped the cluster: {len(stopped)} process(es) stopped, {len(stuck)} would not stop ==")
            if tmp is not None and ok and not stuck:
                shutil.rmtree(tmp, ignore_errors=True)
            else:
                say(f"logs kept in {directory}/logs")
