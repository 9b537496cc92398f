"""``feitian coord get|set|create|rm|ls|stat|watch|lock|elect|txn|status|snapshot``: Nuwa from the shell.

Every command talks to the coord replicas of a local cluster (``--cluster``) as ``--identity``; in a secured
cluster each operation is authorized on ``coord:<path>`` and a refusal exits 6. Values are given as text or read
from a file or stdin (``--from-file``), and printed as UTF-8 text (``get --raw``: the exact bytes); ``--json``
prints machine-readable output (values as text, stats as objects).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import re
import sys
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any, TypeVar

import click
import msgspec

from feitian.cli.cluster import cluster_option
from feitian.cli.identity import identity_option
from feitian.cli.output import emit_json, note, table
from feitian.coord import CoordClient, LockLease, Resync, op_of
from feitian.coord.core import NodeStat, Op
from feitian.deploy import LocalCluster, resolve_cluster_dir
from feitian.errors import (
    DeadlineExceededError,
    FeitianError,
    InvalidArgumentError,
    NotFoundError,
    UnavailableError,
)
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


DEFAULT_TIMEOUT_S = 30.0  # CoordClient's own default: how long a call is retried across replicas


def _run(
    cluster_dir: str | None,
    identity: str | None,
    action: Callable[[CoordClient], Awaitable[T]],
    *,
    bound_s: float | None = None,
    what: str = "coord",
    **options: Any,
) -> T:
    """Run ``action`` with a Nuwa client of the cluster. ``bound_s`` (``--timeout``) bounds the whole command:
    each call is retried across replicas for at most that long, and the command, connecting included, ends
    then with what was observed of each replica (exit 3), or exit 7 if nothing was."""
    lc = LocalCluster(resolve_cluster_dir(cluster_dir))
    if bound_s is not None:
        options["timeout_s"] = bound_s

    async def go() -> T:
        client: list[CoordClient] = []
        bound = asyncio.timeout(bound_s)
        try:
            async with bound, cluster_coord(lc, identity, **options) as nuwa:
                client.append(nuwa)
                return await action(nuwa)
        except TimeoutError:
            if bound_s is None or not bound.expired():
                raise
            if client and client[0].router.observed:
                raise client[0].router.gave_up(what, bound_s) from None
            raise DeadlineExceededError(
                f"{what}: not done within --timeout {bound_s:g}s",
                hint="is the cluster up? `feitian cluster status` shows its processes",
            ) from None

    return run(go())


def stat_json(stat: NodeStat) -> dict[str, Any]:
    return msgspec.to_builtins(stat)  # type: ignore[no-any-return]


def _text(value: bytes) -> str:
    return value.decode("utf-8", "replace")


json_option = click.option("--json", "as_json", is_flag=True, help="Print JSON.")


def ttl_option(what: str) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    return click.option(
        "--ttl",
        "ttl_ms",
        type=int,
        default=None,
        help=f"Session TTL in ms (default 8000; 1000 to 300000): {what} goes this long after this process dies.",
    )


def _session_options(ttl_ms: int | None) -> dict[str, Any]:
    return {} if ttl_ms is None else {"session_ttl_ms": ttl_ms}


def timeout_option(text: str) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    return click.option("--timeout", "timeout_s", type=click.FloatRange(min=0), default=None, help=text)


bound_option = click.option(
    "--timeout",
    "bound_s",
    type=click.FloatRange(min=0, min_open=True),
    default=None,
    help=f"Give up after S seconds, connecting included (default: each call is retried for {DEFAULT_TIMEOUT_S:g}s): "
    "exit 3 saying what each replica did (e.g. none leads: a lost quorum), 7 if none was reached.",
)
hold_option = click.option(
    "--hold",
    "hold_s",
    type=click.FloatRange(min=0),
    default=None,
    help="Let go after S seconds (default: until Ctrl-C, which ends the command normally).",
)
from_file_option = click.option(
    "--from-file",
    "from_file",
    metavar="FILE",
    default=None,
    help="Read the value from FILE ('-': stdin), as bytes, instead of VALUE.",
)


def _value(value: str | None, from_file: str | None, what: str) -> bytes:
    if from_file is not None:
        if value is not None:
            raise InvalidArgumentError(f"{what}: give VALUE or --from-file, not both")
        return sys.stdin.buffer.read() if from_file == "-" else _read_file(from_file, what)
    if value is None:
        raise InvalidArgumentError(f"{what}: give VALUE or --from-file", hint="--from-file - reads stdin")
    return value.encode()


def _held_until_interrupted(command: Callable[[], None], holding: list[bool], what: str) -> None:
    """Run ``command``; Ctrl-C is the normal end once something is held (``holding[0]``): the client closed its
    session on the way out (releasing it), so say so and exit 0. Before that it is an interruption."""
    try:
        command()
    except KeyboardInterrupt:
        if not holding[0]:
            raise
        note(f"released {what}")


@click.group()
def coord() -> None:
    """Nuwa, the coordination service: a replicated tree, sessions, subscriptions, locks, election."""


@coord.command()
@click.argument("path")
@click.option("--stale", is_flag=True, help="Answer from one replica without a read barrier (may be behind).")
@click.option("--raw", is_flag=True, help="Write the exact bytes of the value (no newline, no decoding).")
@bound_option
@cluster_option
@identity_option
@json_option
def get(
    path: str,
    stale: bool,
    raw: bool,
    bound_s: float | None,
    cluster_dir: str | None,
    identity: str | None,
    as_json: bool,
) -> None:
    """Print a file's value (linearizable unless --stale). Exits 4 if it does not exist."""
    if path.endswith("/"):
        raise InvalidArgumentError(f"get {path}: a directory holds no value", hint=f"list it: feitian coord ls {path}")
    got = _run(cluster_dir, identity, lambda n: n.get(path, stale=stale), bound_s=bound_s, what=f"get {path}")
    if as_json:
        emit_json({"path": path, "value": _text(got.value), "revision": got.revision, "stat": stat_json(got.stat)})
    elif raw:
        sys.stdout.buffer.write(got.value)
        sys.stdout.flush()
    else:
        click.echo(_text(got.value))


@coord.command(name="set")
@click.argument("path")
@click.argument("value", required=False)
@from_file_option
@click.option(
    "--version",
    type=click.IntRange(min=1),
    default=None,
    help="Only if the file is at this version (exit 5 otherwise).",
)
@bound_option
@cluster_option
@identity_option
@json_option
def set_(
    path: str,
    value: str | None,
    from_file: str | None,
    version: int | None,
    bound_s: float | None,
    cluster_dir: str | None,
    identity: str | None,
    as_json: bool,
) -> None:
    """Replace a file's value (VALUE, or --from-file; at most 1 MiB)."""
    data = _value(value, from_file, f"set {path}")
    done = _run(
        cluster_dir, identity, lambda n: n.set(path, data, version=version), bound_s=bound_s, what=f"set {path}"
    )
    if as_json:
        emit_json({"path": path, "revision": done.revision, "stat": stat_json(done.stat)})
    else:
        click.echo(f"{path} version {done.stat.version} (revision {done.revision})")


@coord.command()
@click.argument("path")
@click.argument("value", required=False)
@from_file_option
@click.option("--sequential", is_flag=True, help="Append a 10-digit sequence number to the name.")
@click.option("-p", "--parents", is_flag=True, help="Create missing parent directories.")
@click.option(
    "--ephemeral",
    is_flag=True,
    help="Owned by this command's session: it lives until Ctrl-C (or --hold), or until this process dies.",
)
@hold_option
@ttl_option("an ephemeral node")
@bound_option
@cluster_option
@identity_option
@json_option
def create(
    path: str,
    value: str | None,
    from_file: str | None,
    sequential: bool,
    parents: bool,
    ephemeral: bool,
    hold_s: float | None,
    ttl_ms: int | None,
    bound_s: float | None,
    cluster_dir: str | None,
    identity: str | None,
    as_json: bool,
) -> None:
    """Create a file (or a directory: PATH ending with '/'), empty or holding VALUE (or --from-file); prints the
    path created. Exits 5 if it exists, 4 if its directory does not (see -p)."""
    data = b"" if value is None and from_file is None else _value(value, from_file, f"create {path}")
    if not ephemeral and (hold_s is not None or ttl_ms is not None):
        raise InvalidArgumentError(f"create {path}: --hold and --ttl are for --ephemeral nodes")
    holding = [False]

    async def go(n: CoordClient) -> None:
        done = await n.create(path, data, sequential=sequential, parents=parents, ephemeral=ephemeral)
        if as_json:
            emit_json({"path": done.stat.path, "revision": done.revision, "parents": list(done.parents)})
        else:
            click.echo(done.stat.path)
        if ephemeral:
            sys.stdout.flush()
            holding[0] = True
            session = n.current_session
            assert session is not None
            await _hold(hold_s, session.wait_lost())
            session.check()
            note(f"removing {done.stat.path} (closing its session)")

    # --timeout bounds the command; for an ephemeral node, each call of the creation (its session, the node):
    # the node is then held for as long as asked.
    options = _session_options(ttl_ms) | ({"timeout_s": bound_s} if ephemeral and bound_s is not None else {})
    bound = None if ephemeral else bound_s
    _held_until_interrupted(
        lambda: _run(cluster_dir, identity, go, bound_s=bound, what=f"create {path}", **options),
        holding,
        f"{path} (its session ended)",
    )


@coord.command()
@click.argument("path")
@click.option(
    "--version",
    type=click.IntRange(min=1),
    default=None,
    help="Only if the node is at this version (exit 5 otherwise).",
)
@bound_option
@cluster_option
@identity_option
@json_option
def rm(
    path: str, version: int | None, bound_s: float | None, cluster_dir: str | None, identity: str | None, as_json: bool
) -> None:
    """Delete a file or an empty directory. Exits 4 if it does not exist, 5 if a directory is not empty."""
    done = _run(cluster_dir, identity, lambda n: n.delete(path, version=version), bound_s=bound_s, what=f"rm {path}")
    if as_json:
        emit_json({"path": path, "revision": done.revision, "stat": stat_json(done.stat)})
    else:
        click.echo(f"deleted {path} (revision {done.revision})")


@coord.command()
@click.argument("path", default="/")
@click.option("--stale", is_flag=True, help="Answer from one replica without a read barrier (may be behind).")
@bound_option
@cluster_option
@identity_option
@json_option
def ls(
    path: str, stale: bool, bound_s: float | None, cluster_dir: str | None, identity: str | None, as_json: bool
) -> None:
    """List a directory's entries (directories end with '/')."""
    directory = path if path.endswith("/") else path + "/"

    async def collect(n: CoordClient) -> tuple[list[NodeStat], int]:
        out: list[NodeStat] = []
        start_after, revision = "", -1
        while True:
            page = await n.list(directory, start_after=start_after, stale=stale)
            revision = page.revision if revision < 0 else revision
            out.extend(page.children)
            if not page.more or not page.children:
                return out, revision
            start_after = page.children[-1].path

    children, revision = _run(cluster_dir, identity, collect, bound_s=bound_s, what=f"ls {path}")
    if as_json:  # the revision of the first page: `watch --since` it to miss no later change
        emit_json({"path": directory, "revision": revision, "children": [stat_json(c) for c in children]})
        return
    for c in children:
        click.echo(c.path[len(directory) :])


@coord.command()
@click.argument("path")
@click.option("--stale", is_flag=True, help="Answer from one replica without a read barrier (may be behind).")
@bound_option
@cluster_option
@identity_option
@json_option
def stat(
    path: str, stale: bool, bound_s: float | None, cluster_dir: str | None, identity: str | None, as_json: bool
) -> None:
    """Show a node's metadata: creator, revisions, version, owner session. Exits 4 if it does not exist."""
    found = _run(cluster_dir, identity, lambda n: n.stat(path, stale=stale), bound_s=bound_s, what=f"stat {path}")
    if as_json:
        emit_json(stat_json(found))
        return
    table(["FIELD", "VALUE"], [[k, v] for k, v in stat_json(found).items()])


@coord.command()
@click.argument("path")
@click.option("-r", "--recursive", is_flag=True, help="A directory's whole subtree (default: its entries).")
@click.option(
    "--since", type=click.IntRange(min=0), default=None, help="Resume after this revision (default: from now)."
)
@click.option(
    "--count", type=click.IntRange(min=1), default=None, help="Stop after this many events (default: until Ctrl-C)."
)
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

    with contextlib.suppress(KeyboardInterrupt):  # Ctrl-C is how a watch ends
        _run(cluster_dir, identity, follow)


async def _hold_lease(lease: LockLease, seconds: float | None, done: str) -> None:
    """Keep a lock (or a leadership) until ``seconds`` pass or its session is lost (SessionExpiredError), then
    give it up and say ``done``."""
    sys.stdout.flush()
    await _hold(seconds, lease.session.wait_lost())
    lease.check()
    await lease.release()
    note(done)


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
@hold_option
@timeout_option("Give up waiting after S seconds (exit 7); 0: take it only if it is free now.")
@ttl_option("the lock")
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
    """Acquire the lock PATH (a directory of its own: its contenders' nodes go there), print its fencing token,
    hold it until Ctrl-C (or --hold), then release it. Exits 7 if not acquired within --timeout, 1 with an error
    if the session is lost while holding it."""
    if path.strip("/") == "":
        raise InvalidArgumentError("lock /: a lock needs a directory of its own", hint="e.g. /locks/job-17")
    holding = [False]

    async def go(n: CoordClient) -> None:
        lease = await n.lock(path, shared=shared).acquire(timeout_s=timeout_s)
        holding[0] = True
        info = {"lock": path, "node": lease.path, "token": lease.token, "session": lease.session.session_id}
        if as_json:
            emit_json(info)
        else:
            click.echo(f"holding {path}: fencing token {lease.token} (node {lease.path})")
        await _hold_lease(lease, hold_s, f"released {path}")

    _held_until_interrupted(lambda: _run(cluster_dir, identity, go, **_session_options(ttl_ms)), holding, path)


@coord.command()
@click.argument("name")
@click.argument("value", required=False)
@hold_option
@timeout_option("Give up campaigning after S seconds (exit 7); 0: only if nobody leads now.")
@ttl_option("the leadership")
@cluster_option
@identity_option
@json_option
def elect(
    name: str,
    value: str | None,
    hold_s: float | None,
    timeout_s: float | None,
    ttl_ms: int | None,
    cluster_dir: str | None,
    identity: str | None,
    as_json: bool,
) -> None:
    """Campaign in election NAME with VALUE; once elected, print it and lead until Ctrl-C (or --hold).
    Without VALUE: print the current leader (exit 4 if there is none)."""
    if not name or "/" in name:
        raise InvalidArgumentError(f"elect {name!r}: an election name is one path name (no '/')")
    holding = [False]

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
        note(f"campaigning in {name} as {value!r}")
        lease = await election.campaign(value.encode()).acquire(timeout_s=timeout_s)
        holding[0] = True
        if as_json:
            emit_json({"election": name, "leader": value, "token": lease.token, "session": lease.session.session_id})
        else:
            click.echo(f"elected in {name} as {value!r}: token {lease.token}")
        await _hold_lease(lease, hold_s, f"resigned from {name}")

    _held_until_interrupted(
        lambda: _run(cluster_dir, identity, go, **_session_options(ttl_ms)), holding, f"leadership of {name}"
    )


def parse_ops(source: str) -> list[Op]:
    """Transaction operations from JSON: ``[{"op": "create|set|delete|check", "path": ..., ...}]``, the fields of
    the REST API's operations (``coord/ops_json.py``) except that ``value`` is text here. Ephemeral creates are
    refused: the node would go with this command's session, as the command ends."""
    try:
        raw = msgspec.json.decode(source.encode())
    except msgspec.DecodeError as exc:
        raise InvalidArgumentError(f"txn: not JSON: {exc}") from None
    if not isinstance(raw, list) or not all(isinstance(o, dict) for o in raw):
        raise InvalidArgumentError("txn: expected a JSON list of objects")
    ops: list[Op] = []
    for index, item in enumerate(raw):
        if "value" in item:
            if not isinstance(item["value"], str):
                raise InvalidArgumentError(f"txn op {index}: value must be a string (the text to store)")
            item["value_text"] = item.pop("value")
        if item.get("ephemeral") is True:
            raise InvalidArgumentError(
                f"txn op {index}: an ephemeral node would be deleted as soon as this command ends",
                hint="use `feitian coord create --ephemeral PATH` (it holds until Ctrl-C)",
            )
        ops.append(op_of(item, index))
    return ops


@coord.command()
@click.argument("ops")
@bound_option
@cluster_option
@identity_option
@json_option
def txn(ops: str, bound_s: float | None, cluster_dir: str | None, identity: str | None, as_json: bool) -> None:
    """Apply operations all or nothing. OPS is JSON (or @FILE, or - for stdin), e.g.
    '[{"op":"check","path":"/a","version":1},{"op":"set","path":"/a","value":"x"},{"op":"delete","path":"/b"}]'.
    Fields: create: path, value, sequential, parents; set: path, value, version; delete: path, version; check:
    path, exists (default true), version, create_revision, mod_revision. A failed check aborts all of them
    (exit 5, a missing node included); so does an operation that fails (5 for a conflict, 4 when the node or its
    directory is missing)."""
    if ops == "-":
        source = sys.stdin.read()
    elif ops.startswith("@"):
        try:
            source = _read_file(ops[1:], "txn").decode()
        except UnicodeDecodeError as exc:
            raise InvalidArgumentError(f"txn: {ops[1:]} is not UTF-8 text: {exc.reason} at byte {exc.start}") from None
    else:
        source = ops
    parsed = parse_ops(source)
    done = _run(cluster_dir, identity, lambda n: n.txn(parsed), bound_s=bound_s, what="txn")
    if as_json:
        emit_json({"revision": done.revision, "results": msgspec.to_builtins(done.results)})
    else:
        click.echo(f"committed at revision {done.revision}: {len(done.results)} operation(s)")


@coord.command()
@bound_option
@cluster_option
@identity_option
@json_option
def status(bound_s: float | None, cluster_dir: str | None, identity: str | None, as_json: bool) -> None:
    """Each replica's role, term, revision, applied index, sessions, and whether it tracks sessions."""

    async def collect(n: CoordClient) -> list[tuple[str, Any]]:
        rows: list[tuple[str, Any]] = []
        for address in n.router.addresses:
            try:
                rows.append((address, await n.status(address)))
            except FeitianError as exc:
                rows.append((address, exc))
        return rows

    rows = _run(cluster_dir, identity, collect, bound_s=bound_s, what="status")
    unreachable = [a for a, s in rows if isinstance(s, Exception)]
    if as_json:
        emit_json(
            [{"address": a, **({"error": str(s)} if isinstance(s, Exception) else {"status": s})} for a, s in rows]
        )
    else:
        _status_table(rows)
    if unreachable:
        raise UnavailableError(
            f"{len(unreachable)} of {len(rows)} coord replica(s) do not answer: {', '.join(unreachable)}",
            hint="`feitian cluster status` shows which are stopped; `feitian cluster start NODE` starts one again",
        )


def _status_table(rows: list[tuple[str, Any]]) -> None:
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
@bound_option
@cluster_option
@identity_option
@json_option
def save(file: str, bound_s: float | None, cluster_dir: str | None, identity: str | None, as_json: bool) -> None:
    """Save the current state (read from an up-to-date replica) to FILE."""
    info, data = _run(cluster_dir, identity, lambda n: n.save_snapshot(), bound_s=bound_s, what="snapshot save")
    try:
        atomic_write(file, data)
    except FeitianError as exc:
        raise type(exc)(f"snapshot save: cannot write {file}: {exc.message}", hint=exc.hint) from None
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
    from feitian.coord import check_snapshot, restore_replica
    from feitian.runtime.procs import is_running, stop_processes

    data = _read_file(file, "snapshot restore")
    try:
        state_machine = check_snapshot(data)  # refuse a damaged file before touching anything
    except FeitianError as exc:
        raise InvalidArgumentError(
            f"snapshot restore: {file} is not a coord snapshot that can be restored: {exc.message}",
            hint="restore a file written by `feitian coord snapshot save`",
        ) from None
    lc = LocalCluster(resolve_cluster_dir(cluster_dir))
    try:
        procs = [p for p in lc.load().processes if p.role == COORD_ROLE]
    except NotFoundError:  # a stopped cluster (`cluster down` removes its state file): its replicas' data
        procs = []
        names = _stopped_replicas(lc.dir)
    else:
        names = [p.name for p in procs]
    if not names:
        raise NotFoundError(f"restore: no coord replicas at {lc.dir} (neither running nor stopped)")
    running = [p for p in procs if is_running(p.ref)]
    stuck = stop_processes([p.ref for p in running], grace_s=10)
    if stuck:
        raise FeitianError(f"restore: coord replicas would not stop: {stuck}")
    voters = tuple(int(name.rsplit("-", 1)[1]) for name in names)
    for name in names:
        restore_replica(data, f"{lc.dir}/data/{name}", voters)
    started = time.monotonic()
    for p in running:
        lc.restart(p.name)
    if as_json:
        emit_json({"file": file, "revision": state_machine.revision, "replicas": names})
    else:
        click.echo(
            f"restored revision {state_machine.revision} into {len(names)} replica(s); "
            f"{len(running)} restarted in {time.monotonic() - started:.1f}s"
        )


def _stopped_replicas(cluster_dir: str) -> list[str]:
    """The coord replicas whose data a stopped cluster keeps (``data/coord-N/raft``), by id."""
    data = os.path.join(cluster_dir, "data")
    try:
        entries = os.listdir(data)
    except FileNotFoundError:
        return []
    found = [e for e in entries if re.fullmatch(r"coord-\d+", e) and os.path.isdir(os.path.join(data, e, "raft"))]
    return sorted(found, key=lambda name: int(name.rsplit("-", 1)[1]))


def _read_file(path: str, what: str) -> bytes:
    try:
        with open(path, "rb") as f:
            return f.read()
    except FileNotFoundError:
        raise NotFoundError(f"{what}: no file {path}") from None
    except IsADirectoryError:
        raise InvalidArgumentError(f"{what}: {path} is a directory, not a file") from None
    except OSError as exc:
        raise FeitianError(f"{what}: cannot read {path}: {exc.strerror}") from None
