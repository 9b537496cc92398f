"""``feitian coord get|set|create|rm|ls|stat|watch|lock|elect|txn|status|snapshot``: Nuwa from the shell.

Every command talks to the coord replicas of a local cluster (``--cluster``) as ``--identity``; in a secured
cluster each operation is authorized on ``coord:<path>`` and a refusal exits 6. Values are given and printed as
UTF-8 text; ``--json`` prints machine-readable output (values as text, stats as objects).
"""

from __future__ import annotations

import asyncio
import contextlib
import sys
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any, TypeVar

import click
import msgspec

from feitian.cli.cluster import cluster_option
from feitian.cli.identity import identity_option
from feitian.cli.output import emit_json, note, table
from feitian.coord import CoordClient, Resync
from feitian.coord.core import CheckOp, CreateOp, DeleteOp, NodeStat, Op, SetOp
from feitian.deploy.cluster import LocalCluster, resolve_cluster_dir
from feitian.errors import FeitianError, InvalidArgumentError, NotFoundError
from feitian.rpc import ClientConfig
from feitian.runtime.eventloop import run
from feitian.runtime.files import atomic_write

T = TypeVar("T")

COORD_ROLE = "coord"


def coord_addresses(lc: LocalCluster) -> list[str]:
    addresses = [p.addresses[0] for p in lc.load().processes if p.role == COORD_ROLE and p.addresses]
    if not addresses:
        raise NotFoundError(
            f"the cluster at {lc.dir} runs no coord replicas", hint="start it with `feitian cluster up --coord 3`"
        )
    return addresses


@contextlib.asynccontextmanager
async def cluster_coord(
    lc: LocalCluster, identity: str | None = None, name: str = "feitian-coord", **options: Any
) -> AsyncIterator[CoordClient]:
    """A Nuwa client of the cluster at ``lc`` acting as ``identity``; closes its session and connections after."""
    addresses = coord_addresses(lc)
    async with await lc.client(ClientConfig(name=name, connect_timeout_s=0.5), identity=identity) as rpc:
        nuwa = CoordClient(rpc, addresses, **options)
        try:
            yield nuwa
        finally:
            await nuwa.close()


def _run(
    cluster_dir: str | None, identity: str | None, action: Callable[[CoordClient], Awaitable[T]], **options: Any
) -> T:
    lc = LocalCluster(resolve_cluster_dir(cluster_dir))

    async def go() -> T:
        async with cluster_coord(lc, identity, **options) as nuwa:
            return await action(nuwa)

    return run(go())


def stat_json(stat: NodeStat) -> dict[str, Any]:
    return msgspec.to_builtins(stat)  # type: ignore[no-any-return]


def _text(value: bytes) -> str:
    return value.decode("utf-8", "replace")


json_option = click.option("--json", "as_json", is_flag=True, help="Print JSON.")
ttl_option = click.option(
    "--ttl",
    "ttl_ms",
    type=int,
    default=None,
    help="Session TTL in ms (default 8000): the lock goes this long after the holder dies.",
)


@click.group()
def coord() -> None:
    """Nuwa, the coordination service: a replicated tree, sessions, subscriptions, locks, election."""


@coord.command()
@click.argument("path")
@click.option("--stale", is_flag=True, help="Answer from one replica without a read barrier (may be behind).")
@cluster_option
@identity_option
@json_option
def get(path: str, stale: bool, cluster_dir: str | None, identity: str | None, as_json: bool) -> None:
    """Print a file's value (linearizable unless --stale). Exits 4 if it does not exist."""
    got = _run(cluster_dir, identity, lambda n: n.get(path, stale=stale))
    if as_json:
        emit_json({"path": path, "value": _text(got.value), "revision": got.revision, "stat": stat_json(got.stat)})
    else:
        click.echo(_text(got.value))


@coord.command(name="set")
@click.argument("path")
@click.argument("value")
@click.option("--version", type=int, default=None, help="Only if the file is at this version (exit 5 otherwise).")
@cluster_option
@identity_option
@json_option
def set_(
    path: str, value: str, version: int | None, cluster_dir: str | None, identity: str | None, as_json: bool
) -> None:
    """Replace a file's value."""
    done = _run(cluster_dir, identity, lambda n: n.set(path, value.encode(), version=version))
    if as_json:
        emit_json({"path": path, "revision": done.revision, "stat": stat_json(done.stat)})
    else:
        click.echo(f"{path} version {done.stat.version} (revision {done.revision})")


@coord.command()
@click.argument("path")
@click.argument("value", default="")
@click.option("--sequential", is_flag=True, help="Append a 10-digit sequence number to the name.")
@click.option("-p", "--parents", is_flag=True, help="Create missing parent directories.")
@cluster_option
@identity_option
@json_option
def create(
    path: str,
    value: str,
    sequential: bool,
    parents: bool,
    cluster_dir: str | None,
    identity: str | None,
    as_json: bool,
) -> None:
    """Create a file (or a directory: PATH ending with '/'); prints the path created. Exits 5 if it exists."""
    done = _run(cluster_dir, identity, lambda n: n.create(path, value.encode(), sequential=sequential, parents=parents))
    if as_json:
        emit_json({"path": done.stat.path, "revision": done.revision, "parents": list(done.parents)})
    else:
        click.echo(done.stat.path)


@coord.command()
@click.argument("path")
@click.option("--version", type=int, default=None, help="Only if the node is at this version.")
@cluster_option
@identity_option
def rm(path: str, version: int | None, cluster_dir: str | None, identity: str | None) -> None:
    """Delete a file or an empty directory. Exits 4 if it does not exist."""
    _run(cluster_dir, identity, lambda n: n.delete(path, version=version))


@coord.command()
@click.argument("path", default="/")
@click.option("--stale", is_flag=True, help="Answer from one replica without a read barrier (may be behind).")
@cluster_option
@identity_option
@json_option
def ls(path: str, stale: bool, cluster_dir: str | None, identity: str | None, as_json: bool) -> None:
    """List a directory's entries (directories end with '/')."""
    directory = path if path.endswith("/") else path + "/"

    async def collect(n: CoordClient) -> list[NodeStat]:
        out: list[NodeStat] = []
        start_after = ""
        while True:
            page = await n.list(directory, start_after=start_after, stale=stale)
            out.extend(page.children)
            if not page.more or not page.children:
                return out
            start_after = page.children[-1].path

    children = _run(cluster_dir, identity, collect)
    if as_json:
        emit_json([stat_json(c) for c in children])
        return
    for c in children:
        click.echo(c.path[len(directory) :])


@coord.command()
@click.argument("path")
@cluster_option
@identity_option
@json_option
def stat(path: str, cluster_dir: str | None, identity: str | None, as_json: bool) -> None:
    """Show a node's metadata: creator, revisions, version, owner session."""
    found = _run(cluster_dir, identity, lambda n: n.stat(path))
    if as_json:
        emit_json(stat_json(found))
        return
    table(["FIELD", "VALUE"], [[k, v] for k, v in stat_json(found).items()])


@coord.command()
@click.argument("path")
@click.option("-r", "--recursive", is_flag=True, help="A directory's whole subtree (default: its entries).")
@click.option("--since", type=int, default=None, help="Resume after this revision (default: from now).")
@click.option("--count", type=int, default=None, help="Stop after this many events (default: until Ctrl-C).")
@cluster_option
@identity_option
@json_option
def watch(
    path: str,
    recursive: bool,
    since: int | None,
    count: int | None,
    cluster_dir: str | None,
    identity: str | None,
    as_json: bool,
) -> None:
    """Print PATH's events as they happen: REVISION KIND PATH. A file: its own events; a directory (ending with
    '/'): its entries' (-r: everything below it). Survives replica failures without missing an event."""

    async def follow(n: CoordClient) -> None:
        seen = 0
        async with n.watch(path, recursive=recursive, since=since) as w:
            note(f"watching {path} from revision {w.revision}")
            async for item in w:
                if isinstance(item, Resync):
                    line: Any = {"resync": True, "revision": item.revision, "nodes": [s.path for s in item.nodes]}
                    text = f"{item.revision} resync {len(item.nodes)} node(s) (history compacted)"
                else:
                    line = {"revision": item.revision, "kind": item.kind.value, "path": item.path}
                    text = f"{item.revision} {item.kind.value} {item.path}"
                if as_json:
                    sys.stdout.write(msgspec.json.encode(line).decode() + "\n")
                else:
                    sys.stdout.write(text + "\n")
                sys.stdout.flush()
                seen += 1
                if count is not None and seen >= count:
                    return

    _run(cluster_dir, identity, follow)


async def _hold(seconds: float | None, lost: Awaitable[Any]) -> None:
    waiting = asyncio.ensure_future(lost)
    try:
        await asyncio.wait_for(asyncio.shield(waiting), seconds)
    except TimeoutError:
        return
    finally:
        waiting.cancel()


@coord.command()
@click.argument("path")
@click.option("--shared", is_flag=True, help="A shared lock (exclusive of exclusive holders only).")
@click.option("--hold", "hold_s", type=float, default=None, help="Release after S seconds (default: until Ctrl-C).")
@click.option("--timeout", "timeout_s", type=float, default=None, help="Give up waiting after S seconds (exit 7).")
@ttl_option
@cluster_option
@identity_option
@json_option
def lock(
    path: str,
    shared: bool,
    hold_s: float | None,
    timeout_s: float | None,
    ttl_ms: int | None,
    cluster_dir: str | None,
    identity: str | None,
    as_json: bool,
) -> None:
    """Acquire the lock PATH, print its fencing token, hold it until Ctrl-C (or --hold), then release it.
    Exits 1 with an error if the session is lost while holding it."""

    async def go(n: CoordClient) -> None:
        lease = await n.lock(path, shared=shared).acquire(timeout_s=timeout_s)
        info = {"lock": path, "node": lease.path, "token": lease.token, "session": lease.session.session_id}
        if as_json:
            emit_json(info)
        else:
            click.echo(f"holding {path}: fencing token {lease.token} (node {lease.path})")
        sys.stdout.flush()
        await _hold(hold_s, lease.session.wait_lost())
        lease.check()
        await lease.release()
        note(f"released {path}")

    _run(cluster_dir, identity, go, **({"session_ttl_ms": ttl_ms} if ttl_ms else {}))


@coord.command()
@click.argument("name")
@click.argument("value", required=False)
@click.option("--hold", "hold_s", type=float, default=None, help="Resign after S seconds (default: until Ctrl-C).")
@ttl_option
@cluster_option
@identity_option
@json_option
def elect(
    name: str,
    value: str | None,
    hold_s: float | None,
    ttl_ms: int | None,
    cluster_dir: str | None,
    identity: str | None,
    as_json: bool,
) -> None:
    """Campaign in election NAME with VALUE; once elected, print it and lead until Ctrl-C (or --hold).
    Without VALUE: print the current leader (exit 4 if there is none)."""

    async def go(n: CoordClient) -> None:
        election = n.election(name)
        if value is None:
            leader = await election.leader()
            if leader is None:
                raise NotFoundError(f"election {name}: nobody leads")
            if as_json:
                emit_json({"election": name, "leader": _text(leader.value), "token": leader.token})
            else:
                click.echo(f"{name}: {_text(leader.value)} leads (token {leader.token})")
            return
        lease = await election.campaign(value.encode()).acquire()
        if as_json:
            emit_json({"election": name, "leader": value, "token": lease.token, "session": lease.session.session_id})
        else:
            click.echo(f"elected in {name} as {value!r}: token {lease.token}")
        sys.stdout.flush()
        await _hold(hold_s, lease.session.wait_lost())
        lease.check()
        await lease.resign()
        note(f"resigned from {name}")

    _run(cluster_dir, identity, go, **({"session_ttl_ms": ttl_ms} if ttl_ms else {}))


def parse_ops(text: str) -> list[Op]:
    """Transaction operations from JSON: ``[{"op": "create|set|delete|check", "path": ..., ...}]``."""
    try:
        raw = msgspec.json.decode(text.encode())
    except msgspec.DecodeError as exc:
        raise InvalidArgumentError(f"txn: not JSON: {exc}") from None
    if not isinstance(raw, list) or not all(isinstance(o, dict) for o in raw):
        raise InvalidArgumentError("txn: expected a JSON list of objects")
    ops: list[Op] = []
    for index, item in enumerate(raw):
        kind, fields = item.pop("op", None), dict(item)
        if "value" in fields:
            fields["value"] = str(fields["value"]).encode()
        if "version" in fields and kind in ("set", "delete"):
            fields["expected_version"] = fields.pop("version")
        klass = {"create": CreateOp, "set": SetOp, "delete": DeleteOp, "check": CheckOp}.get(str(kind))
        if klass is None:
            raise InvalidArgumentError(f"txn op {index}: op must be create, set, delete or check, got {kind!r}")
        try:
            ops.append(klass(**fields))
        except TypeError as exc:
            raise InvalidArgumentError(f"txn op {index}: {exc}") from None
    return ops


@coord.command()
@click.argument("ops")
@cluster_option
@identity_option
@json_option
def txn(ops: str, cluster_dir: str | None, identity: str | None, as_json: bool) -> None:
    """Apply operations all or nothing. OPS is JSON (or @FILE, or - for stdin), e.g.
    '[{"op":"check","path":"/a","version":1},{"op":"set","path":"/a","value":"x"},{"op":"delete","path":"/b"}]'.
    A failed check or operation aborts all of them (exit 5 for a conflict, 4 for a missing node)."""
    if ops == "-":
        text = sys.stdin.read()
    elif ops.startswith("@"):
        with open(ops[1:], encoding="utf-8") as f:
            text = f.read()
    else:
        text = ops
    parsed = parse_ops(text)
    done = _run(cluster_dir, identity, lambda n: n.txn(parsed))
    if as_json:
        emit_json({"revision": done.revision, "results": msgspec.to_builtins(done.results)})
    else:
        click.echo(f"committed at revision {done.revision}: {len(done.results)} operation(s)")


@coord.command()
@cluster_option
@identity_option
@json_option
def status(cluster_dir: str | None, identity: str | None, as_json: bool) -> None:
    """Each replica's role, term, revision, applied index, sessions, and whether it tracks sessions."""

    async def collect(n: CoordClient) -> list[tuple[str, Any]]:
        rows: list[tuple[str, Any]] = []
        for address in n.router.addresses:
            try:
                rows.append((address, await n.status(address)))
            except FeitianError as exc:
                rows.append((address, exc))
        return rows

    rows = _run(cluster_dir, identity, collect)
    if as_json:
        emit_json(
            [{"address": a, **({"error": str(s)} if isinstance(s, Exception) else {"status": s})} for a, s in rows]
        )
        return
    table(
        ["ADDRESS", "ROLE", "TERM", "REVISION", "APPLIED", "NODES", "SESSIONS", "SNAPSHOT"],
        [
            [a, f"unreachable: {s}", "", "", "", "", "", ""]
            if isinstance(s, Exception)
            else [
                a,
                s.replica.role + (" (tracking sessions)" if s.tracking else ""),
                s.replica.term,
                s.revision,
                s.replica.applied_index,
                s.nodes,
                s.sessions,
                s.replica.snapshot_index,
            ]
            for a, s in rows
        ],
    )


@coord.group()
def snapshot() -> None:
    """Back up the coordination state, and restore a backup."""


@snapshot.command()
@click.argument("file")
@cluster_option
@identity_option
@json_option
def save(file: str, cluster_dir: str | None, identity: str | None, as_json: bool) -> None:
    """Save the current state (read from an up-to-date replica) to FILE."""
    info, data = _run(cluster_dir, identity, lambda n: n.save_snapshot())
    atomic_write(file, data)
    if as_json:
        emit_json({"file": file, "revision": info.revision, "size_bytes": info.size_bytes})
    else:
        click.echo(f"saved revision {info.revision} ({info.size_bytes} bytes) to {file}")


@snapshot.command()
@click.argument("file")
@cluster_option
@json_option
def restore(file: str, cluster_dir: str | None, as_json: bool) -> None:
    """Replace the state of every coord replica with FILE's. Running replicas are stopped, restored and started
    again (their old data is kept beside it); a stopped cluster is restored in place."""
    from feitian.coord.backup import check_snapshot, restore_replica
    from feitian.runtime.procs import is_running, stop_processes

    with open(file, "rb") as f:
        data = f.read()
    state_machine = check_snapshot(data)  # refuse a damaged file before touching anything
    lc = LocalCluster(resolve_cluster_dir(cluster_dir))
    procs = [p for p in lc.load().processes if p.role == COORD_ROLE]
    if not procs:
        raise NotFoundError(f"the cluster at {lc.dir} runs no coord replicas")
    running = [p for p in procs if is_running(p.ref)]
    stuck = stop_processes([p.ref for p in running], grace_s=10)
    if stuck:
        raise FeitianError(f"restore: coord replicas would not stop: {stuck}")
    voters = tuple(int(p.name.rsplit("-", 1)[1]) for p in procs)
    for p in procs:
        restore_replica(data, f"{lc.dir}/data/{p.name}", voters)
    started = time.monotonic()
    for p in running:
        lc.restart(p.name)
    if as_json:
        emit_json({"file": file, "revision": state_machine.revision, "replicas": [p.name for p in procs]})
    else:
        click.echo(
            f"restored revision {state_machine.revision} into {len(procs)} replica(s); "
            f"{len(running)} restarted in {time.monotonic() - started:.1f}s"
        )
