"""``feitian dfs ...``: Pangu, the file system of a local cluster, from the shell.

Paths in the file system are absolute (``/data/a.csv``). Read commands take ``--json``. Long transfers show a
progress line on stderr when it is a terminal.
"""

from __future__ import annotations

import os
import sys
import time
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

import click

from feitian.cli.cluster import cluster_option
from feitian.cli.identity import identity_option
from feitian.cli.output import emit_json, note, table
from feitian.errors import FeitianError, UnavailableError
from feitian.runtime.eventloop import run

T = TypeVar("T")
MiB = 1 << 20
BLOCK = 8 * MiB
json_option = click.option("--json", "as_json", is_flag=True, help="Print JSON.")


def _run(cluster_dir: str | None, identity: str | None, action: Callable[[Any], Awaitable[T]]) -> T:
    from feitian.dfs.local import connect_local

    async def go() -> T:
        dfs = await connect_local(cluster_dir, identity=identity, name="feitian-dfs")
        try:
            return await action(dfs)
        finally:
            await dfs.rpc.close()

    return run(go())


class Progress:
    """``put 120/1024 MiB  310 MB/s`` on stderr, rewritten in place (only on a terminal)."""

    def __init__(self, verb: str, total: int, enabled: bool | None) -> None:
        self.verb, self.total, self.done = verb, total, 0
        self.enabled = sys.stderr.isatty() if enabled is None else enabled
        self.started = self.shown = time.monotonic()

    def add(self, n: int) -> None:
        self.done += n
        now = time.monotonic()
        if self.enabled and (now - self.shown > 0.2 or self.done >= self.total):
            self.shown = now
            rate = self.done / max(1e-9, now - self.started) / 1e6
            sys.stderr.write(f"\r  {self.verb} {self.done / MiB:.0f}/{self.total / MiB:.0f} MiB  {rate:.0f} MB/s ")
            sys.stderr.flush()

    def finish(self) -> None:
        if self.enabled:
            sys.stderr.write("\n")


progress_option = click.option(
    "--progress/--no-progress", default=None, help="Show a progress line (default: when stderr is a terminal)."
)


@click.group()
def dfs() -> None:
    """Pangu, the distributed file system: files in chunks on chunk servers, 3 replicas across racks."""


@dfs.command()
@click.argument("local", type=click.Path(dir_okay=False, allow_dash=True))
@click.argument("remote")
@click.option("-f", "--force", is_flag=True, help="Replace REMOTE if it exists.")
@click.option("--replication", type=int, default=0, help="Replicas per chunk (default: the cluster's, 3).")
@click.option("--chunk-size", "chunk_size", type=int, default=0, help="Chunk size in bytes (default 64 MiB).")
@click.option("--log", "log_file", is_flag=True, help="Create a log file (append-only, parallel replica writes).")
@progress_option
@cluster_option
@identity_option
def put(
    local: str,
    remote: str,
    force: bool,
    replication: int,
    chunk_size: int,
    log_file: bool,
    progress: bool | None,
    cluster_dir: str | None,
    identity: str | None,
) -> None:
    """Copy the local file LOCAL (- for stdin) to REMOTE; returns once every replica has it on disk."""

    async def action(client: Any) -> int:
        size = os.path.getsize(local) if local != "-" else 0
        bar = Progress("put", size, progress if local != "-" else False)
        writer = await client.create(
            remote,
            overwrite=force,
            replication=replication,
            chunk_size_bytes=chunk_size,
            file_type="log" if log_file else "normal",
        )
        try:
            with open(local, "rb") if local != "-" else os.fdopen(os.dup(0), "rb") as f:  # noqa: ASYNC230
                while block := f.read(BLOCK):
                    await writer.write(block)
                    bar.add(len(block))
        except BaseException:
            await writer.abort()
            raise
        length: int = await writer.close()
        bar.finish()
        return length

    length = _run(cluster_dir, identity, action)
    note(f"{remote}: {length} bytes")


@dfs.command()
@click.argument("remote")
@click.argument("local", type=click.Path(dir_okay=False, allow_dash=True))
@progress_option
@cluster_option
@identity_option
def get(remote: str, local: str, progress: bool | None, cluster_dir: str | None, identity: str | None) -> None:
    """Copy REMOTE to the local file LOCAL (- for stdout); every block is verified against its checksum."""

    async def action(client: Any) -> int:
        status = await client.stat(remote)
        bar = Progress("get", status.length, progress if local != "-" else False)
        reader = await client.open_read(remote)
        out = sys.stdout.buffer if local == "-" else open(local, "wb")  # noqa: SIM115, ASYNC230 - closed below
        try:
            pos = 0
            while pos < status.length:
                data = await reader.read(pos, min(4 * BLOCK, status.length - pos))
                out.write(data)
                pos += len(data)
                bar.add(len(data))
        finally:
            if out is not sys.stdout.buffer:
                out.close()
        bar.finish()
        return pos

    _run(cluster_dir, identity, action)


@dfs.command()
@click.argument("remote")
@click.option("--offset", type=int, default=0, show_default=True, help="First byte.")
@click.option("--length", type=int, default=-1, help="Bytes to print (default: to the end).")
@cluster_option
@identity_option
def cat(remote: str, offset: int, length: int, cluster_dir: str | None, identity: str | None) -> None:
    """Print REMOTE (or a byte range of it) to stdout."""
    data = _run(cluster_dir, identity, lambda c: c.read(remote, offset, length))
    sys.stdout.buffer.write(data)
    sys.stdout.flush()


@dfs.command()
@click.argument("path", default="/")
@cluster_option
@identity_option
@json_option
def ls(path: str, cluster_dir: str | None, identity: str | None, as_json: bool) -> None:
    """List a directory (or show one file)."""

    async def action(client: Any) -> Any:
        status = await client.stat(path)
        if str(status.kind) == "file":
            return [status]
        return await client.list(path)

    entries = _run(cluster_dir, identity, action)
    if as_json:
        emit_json(entries)
        return
    rows = []
    for e in entries:
        name = getattr(e, "name", None) or e.path
        kind = str(e.kind)
        rows.append([kind, e.length if kind == "file" else "-", name + ("/" if kind == "dir" else "")])
    table(["KIND", "BYTES", "NAME"], rows)


@dfs.command()
@click.argument("path")
@cluster_option
@identity_option
@json_option
def stat(path: str, cluster_dir: str | None, identity: str | None, as_json: bool) -> None:
    """A file's or directory's metadata: length, replication, chunk size, chunks, lease holder."""
    status = _run(cluster_dir, identity, lambda c: c.stat(path))
    if as_json:
        emit_json(status)
        return
    for key in ("path", "kind", "length", "replication", "file_type", "chunk_size_bytes", "chunk_count", "entries"):
        click.echo(f"{key:18} {getattr(status, key)}")
    click.echo(f"{'mtime':18} {time.strftime('%Y-%m-%d %H:%M:%S', time.localtime(status.mtime_ns / 1e9))}")
    if status.lease_holder:
        click.echo(f"{'open for writing':18} by {status.lease_holder} ({status.lease_mode})")


@dfs.command()
@click.argument("path")
@click.option("-r", "--recursive", is_flag=True, help="Delete a directory and everything below it.")
@cluster_option
@identity_option
def rm(path: str, recursive: bool, cluster_dir: str | None, identity: str | None) -> None:
    """Delete a file or an (empty, unless -r) directory; its chunks are freed."""
    result = _run(cluster_dir, identity, lambda c: c.delete(path, recursive=recursive))
    note(f"deleted {result.files} file(s), {result.dirs} dir(s), {result.freed_chunks} chunk(s)")


@dfs.command()
@click.argument("src")
@click.argument("dst")
@click.option("-f", "--force", is_flag=True, help="Replace DST if it is a file.")
@cluster_option
@identity_option
def mv(src: str, dst: str, force: bool, cluster_dir: str | None, identity: str | None) -> None:
    """Rename SRC to DST, atomically (a file or a whole directory)."""
    _run(cluster_dir, identity, lambda c: c.rename(src, dst, overwrite=force))


@dfs.command()
@click.argument("path")
@click.option("-p", "--parents/--no-parents", default=True, show_default=True, help="Create missing parents.")
@cluster_option
@identity_option
def mkdir(path: str, parents: bool, cluster_dir: str | None, identity: str | None) -> None:
    """Create a directory."""
    _run(cluster_dir, identity, lambda c: c.mkdir(path, parents=parents))


@dfs.command()
@click.argument("remote")
@click.argument("local", type=click.Path(dir_okay=False, allow_dash=True), default="-")
@cluster_option
@identity_option
def append(remote: str, local: str, cluster_dir: str | None, identity: str | None) -> None:
    """Append LOCAL (default: stdin) to REMOTE (created if missing); durable on every replica on return."""
    with open(local, "rb") if local != "-" else os.fdopen(os.dup(0), "rb") as f:
        data = f.read()
    length = _run(cluster_dir, identity, lambda c: c.append(remote, data))
    note(f"{remote}: {length} bytes")


@dfs.command()
@click.argument("remote")
@click.option("-f", "--follow", is_flag=True, help="Keep printing what is appended (Ctrl-C to stop).")
@click.option("--offset", type=int, default=-1, help="Start here (default: the last 1 KiB).")
@cluster_option
@identity_option
def tail(remote: str, follow: bool, offset: int, cluster_dir: str | None, identity: str | None) -> None:
    """Print the end of REMOTE; with -f, follow it as a writer appends (acknowledged bytes only)."""

    async def action(client: Any) -> None:
        start = offset
        if start < 0:
            start = max(0, (await client.stat(remote)).length - 1024)
        async for data in client.tail(remote, start, follow=follow):
            sys.stdout.buffer.write(data)
            sys.stdout.flush()

    _run(cluster_dir, identity, action)


@dfs.command()
@cluster_option
@identity_option
@json_option
def fsck(cluster_dir: str | None, identity: str | None, as_json: bool) -> None:
    """Check every chunk: missing (no good replica), corrupt copies, under-replicated. Exits 1 if any."""
    report = _run(cluster_dir, identity, lambda c: c.fsck())
    if as_json:
        emit_json(report)
    else:
        click.echo(f"files {report.files}, chunks {report.chunks}, copies in flight {report.copies_in_flight}")
        for what in ("missing", "corrupt", "under_replicated", "over_replicated", "stale", "dead_servers"):
            items = getattr(report, what)
            click.echo(f"{what:18} {len(items)}" + (f"  {list(items)[:10]}" if items else ""))
        click.echo("HEALTHY" if report.healthy else "NOT HEALTHY")
    if not report.healthy:
        raise FeitianError(
            f"file system not healthy: {len(report.missing)} missing, {len(report.corrupt)} corrupt, "
            f"{len(report.under_replicated)} under-replicated chunks",
            hint="repair runs by itself; missing chunks need their chunk servers back",
        )


@dfs.command()
@cluster_option
@identity_option
@json_option
def servers(cluster_dir: str | None, identity: str | None, as_json: bool) -> None:
    """The chunk servers: rack, liveness, state, usage, replicas held."""
    rows = _run(cluster_dir, identity, lambda c: c.servers())
    if as_json:
        emit_json(rows)
        return
    table(
        ["SERVER", "RACK", "LIVE", "STATE", "USED MiB", "CAPACITY MiB", "CHUNKS", "ADDRESS"],
        [
            [s.server_id, s.rack, s.live, s.state, s.used_bytes // MiB, s.capacity_bytes // MiB, s.chunks, s.address]
            for s in rows
        ],
    )


@dfs.command()
@cluster_option
@identity_option
@json_option
def balance(cluster_dir: str | None, identity: str | None, as_json: bool) -> None:
    """Move chunks toward even disk utilization, round after round until servers are within the threshold (the
    background balancer also runs every balance_interval_s)."""
    reply = _run(cluster_dir, identity, lambda c: c.balance())
    if as_json:
        emit_json(reply)
    else:
        note(f"started {reply.moves_started} move(s); utilization spread was {reply.spread_before:.3f}")


@dfs.command()
@click.argument("node")
@click.option("--cancel", is_flag=True, help="Put NODE back in service instead.")
@click.option("--wait", "wait_s", type=float, default=0.0, help="Wait up to this many seconds for it to empty.")
@cluster_option
@identity_option
def decommission(node: str, cancel: bool, wait_s: float, cluster_dir: str | None, identity: str | None) -> None:
    """Migrate every chunk off the chunk server NODE (it gets no new ones), then remove it from the cluster."""

    async def action(client: Any) -> int:
        import asyncio

        held: int = await client.decommission(node, cancel=cancel)
        note(f"{node}: {'back in service' if cancel else 'decommissioning'}, {held} replicas on it")
        deadline = time.monotonic() + wait_s
        while not cancel and wait_s > 0:
            remaining = {s.server_id: s for s in await client.servers()}
            if node not in remaining:
                note(f"{node} holds nothing and left the cluster")
                return 0
            if time.monotonic() > deadline:
                raise UnavailableError(f"{node} still holds {remaining[node].chunks} replicas after {wait_s:.0f}s")
            await asyncio.sleep(0.5)
        return held

    _run(cluster_dir, identity, action)


@dfs.command()
@cluster_option
@identity_option
@json_option
def status(cluster_dir: str | None, identity: str | None, as_json: bool) -> None:
    """Each master replica: role, term, applied index, files, chunks."""
    from feitian.dfs.local import master_addresses

    addresses = master_addresses(cluster_dir)

    async def action(client: Any) -> list[Any]:
        rows: list[Any] = []
        for address in addresses:
            try:
                rows.append(await client.master_status(address))
            except FeitianError as exc:
                rows.append({"address": address, "error": str(exc)})
        return rows

    rows = _run(cluster_dir, identity, action)
    if as_json:
        emit_json(rows)
        return
    table(
        ["NODE", "ROLE", "TERM", "APPLIED", "FILES", "CHUNKS", "SERVERS"],
        [
            [r["address"], f"unreachable: {r['error']}", "", "", "", "", ""]
            if isinstance(r, dict)
            else [r.node, r.role, r.term, r.applied_index, r.files, r.chunks, r.servers]
            for r in rows
        ],
    )
