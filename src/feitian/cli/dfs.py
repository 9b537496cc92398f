"""``feitian dfs ...``: Pangu, the file system of a local cluster, from the shell.

Paths in the file system are absolute (``/data/a.csv``). Read commands take ``--json``. Long transfers show a
progress line on stderr when it is a terminal. Every mistake — a bad argument, a missing local or remote file, a
directory where a file is expected — is one ``error:`` line (and a ``hint:`` naming the flag that helps) with
the exit code of docs/cli.md; a closed stdout (``| head``) ends a command quietly with exit 0.
"""

from __future__ import annotations

import contextlib
import os
import posixpath
import sys
import time
from collections.abc import Awaitable, Callable, Iterator
from typing import Any, TypeVar

import click

from feitian.base.units import MiB
from feitian.cli.cluster import cluster_option
from feitian.cli.identity import identity_option
from feitian.cli.output import emit_json, note, table
from feitian.errors import EXIT_UNAVAILABLE, EXIT_USAGE, FeitianError, UnavailableError, UnavailableReason
from feitian.runtime.eventloop import run

T = TypeVar("T")
json_option = click.option("--json", "as_json", is_flag=True, help="Print JSON.")
progress_option = click.option(
    "--progress/--no-progress", default=None, help="Show a progress line (default: when stderr is a terminal)."
)

# What to tell a user of this command when the file system refuses (by the error's reason, else its code): the
# flags of this CLI, not the Python API's arguments the error itself suggests.
_OVERWRITE = {"already_exists": "add -f to replace it"}
HINTS: dict[str, dict[str, str]] = {
    "put": _OVERWRITE,
    "cp": _OVERWRITE,
    "mv": {"already_exists": "add -f to replace the destination file", "dir_exists": "remove that directory first"},
    "rm": {"not_empty": "add -r to delete the directory and everything below it"},
    "mkdir": {"no_parent": "leave out --no-parents to create the missing parents too"},
}


class DfsGroup(click.Group):
    """Usage mistakes print as ``error:``/``hint:`` (exit 2) like every other error; a reader that closed our
    stdout (``feitian dfs cat f | head``) ends the command with exit 0, as ``cat`` does."""

    def invoke(self, ctx: click.Context) -> Any:
        try:
            result = super().invoke(ctx)
            sys.stdout.flush()  # here, where a closed pipe can still be handled, not at interpreter exit
            return result
        except click.UsageError as exc:
            click.echo(f"error: {exc.format_message()}", err=True)
            where = exc.ctx.command_path if exc.ctx is not None else "feitian dfs"
            click.echo(f"hint: `{where} --help` shows the arguments and options", err=True)
            sys.exit(EXIT_USAGE)
        except BrokenPipeError:
            devnull = os.open(os.devnull, os.O_WRONLY)  # Python would complain flushing stdout at exit
            os.dup2(devnull, sys.stdout.fileno())
            sys.exit(0)


@contextlib.contextmanager
def _cli_hints(command: str) -> Iterator[None]:
    try:
        yield
    except FeitianError as exc:
        hints = HINTS.get(command, {})
        hint = hints.get(str(exc.fields.get("reason", ""))) or hints.get(exc.code)
        if exc.fields.get("reason") == UnavailableReason.NO_SERVERS and command in ("put", "cp"):
            available = exc.fields.get("available", 0)
            hint = f"use --replication {available}, or start more chunk servers" if available else exc.hint
        if hint:
            exc.hint = hint
        raise


def _run(cluster_dir: str | None, identity: str | None, action: Callable[[Any], Awaitable[T]], command: str = "") -> T:
    from feitian.deploy import connect_local, remember_leader

    async def go() -> T:
        dfs = await connect_local(cluster_dir, identity=identity, name="feitian-dfs")
        try:
            return await action(dfs)
        finally:
            remember_leader(cluster_dir, dfs)
            await dfs.rpc.close()

    with _cli_hints(command):
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


@click.group(cls=DfsGroup)
def dfs() -> None:
    """Pangu, the distributed file system: files in chunks on chunk servers, 3 replicas across racks."""


# -- moving bytes ------------------------------------------------------------------------------------------------


@dfs.command()
@click.argument("local")
@click.argument("remote")
@click.option("-f", "--force", is_flag=True, help="Replace REMOTE if it exists.")
@click.option(
    "--replication", type=click.IntRange(min=1), default=None, help="Replicas per chunk (default: the cluster's, 3)."
)
@click.option(
    "--chunk-size",
    "chunk_size",
    type=click.IntRange(min=1),
    default=None,
    help="Chunk size in bytes, a multiple of 64 KiB (default: the cluster's, 64 MiB).",
)
@click.option("--log", "log_file", is_flag=True, help="Create a log file (append-only, parallel replica writes).")
@progress_option
@cluster_option
@identity_option
def put(
    local: str,
    remote: str,
    force: bool,
    replication: int | None,
    chunk_size: int | None,
    log_file: bool,
    progress: bool | None,
    cluster_dir: str | None,
    identity: str | None,
) -> None:
    """Copy the local file LOCAL (- for stdin) to REMOTE (an existing directory, or a path ending with /,
    receives it under its name); returns once every replica has it on disk. A failed upload leaves no file."""
    from feitian.dfs import into_remote_dir, open_local, upload

    source = open_local("put", local) if local != "-" else os.fdopen(os.dup(0), "rb")

    async def action(client: Any) -> tuple[str, int]:
        target = await into_remote_dir(client, "put", os.path.basename(local) if local != "-" else "", remote)
        size = os.fstat(source.fileno()).st_size if local != "-" else 0
        bar = Progress("put", size, progress if local != "-" else False)
        length = await upload(
            client,
            source,
            target,
            overwrite=force,
            replication=replication or 0,
            chunk_size_bytes=chunk_size or 0,
            file_type="log" if log_file else "normal",
            progress=bar.add,
        )
        bar.finish()
        return target, length

    with source:
        target, length = _run(cluster_dir, identity, action, "put")
    note(f"{target}: {length} bytes")


@dfs.command()
@click.argument("remote")
@click.argument("local")
@progress_option
@cluster_option
@identity_option
def get(remote: str, local: str, progress: bool | None, cluster_dir: str | None, identity: str | None) -> None:
    """Copy REMOTE to the local file LOCAL (- for stdout; an existing directory receives it under its name);
    every block is verified against its checksum. LOCAL appears only once complete."""
    from feitian.dfs import download, into_local_dir, local_sink, remote_file

    async def action(client: Any) -> int:
        status = await remote_file(client, "get", remote)
        bar = Progress("get", status.length, progress if local != "-" else False)
        if local == "-":
            return await download(client, status.path, sys.stdout.buffer, 0, status.length, bar.add)
        with local_sink("get", into_local_dir(posixpath.basename(status.path), local)) as out:
            done = await download(client, status.path, out, 0, status.length, bar.add)
        bar.finish()
        return done

    _run(cluster_dir, identity, action, "get")


@dfs.command()
@click.argument("remote")
@click.option("--offset", type=click.IntRange(min=0), default=0, show_default=True, help="First byte.")
@click.option(
    "--length", type=click.IntRange(min=0), default=None, help="Bytes to print at most (default: to the end)."
)
@cluster_option
@identity_option
def cat(remote: str, offset: int, length: int | None, cluster_dir: str | None, identity: str | None) -> None:
    """Print REMOTE (or a byte range of it) to stdout. A range past the end is cut at the end (nothing at or
    after it), like ``head -c``."""
    from feitian.dfs import download, remote_file

    async def action(client: Any) -> int:
        status = await remote_file(client, "cat", remote)
        start = min(offset, status.length)
        count = status.length - start if length is None else min(length, status.length - start)
        return await download(client, status.path, sys.stdout.buffer, start, count)

    _run(cluster_dir, identity, action, "cat")


@dfs.command()
@click.argument("src")
@click.argument("dst")
@click.option("-f", "--force", is_flag=True, help="Replace DST if it is a file.")
@cluster_option
@identity_option
def cp(src: str, dst: str, force: bool, cluster_dir: str | None, identity: str | None) -> None:
    """Copy the file SRC to DST (an existing directory receives it under its name), through this client: every
    block verified, the copy with SRC's replication, chunk size and type. A failed copy leaves no file."""
    from feitian.dfs import copy_file

    length = _run(cluster_dir, identity, lambda c: copy_file(c, src, dst, overwrite=force), "cp")
    note(f"{dst}: {length} bytes")


@dfs.command()
@click.argument("remote")
@click.argument("local", default="-")
@cluster_option
@identity_option
def append(remote: str, local: str, cluster_dir: str | None, identity: str | None) -> None:
    """Append LOCAL (default: stdin) to REMOTE (created if missing); durable on every replica on return."""
    from feitian.dfs import open_local

    with open_local("append", local) if local != "-" else os.fdopen(os.dup(0), "rb") as f:
        data = f.read()
    length = _run(cluster_dir, identity, lambda c: c.append(remote, data), "append")
    note(f"{remote}: {length} bytes")


@dfs.command()
@click.argument("remote")
@click.option("-f", "--follow", is_flag=True, help="Keep printing what is appended (Ctrl-C to stop: exit 0).")
@click.option(
    "--offset", type=click.IntRange(min=0), default=None, help="Start at this byte (default: the last 1 KiB)."
)
@cluster_option
@identity_option
def tail(remote: str, follow: bool, offset: int | None, cluster_dir: str | None, identity: str | None) -> None:
    """Print the end of REMOTE; with -f, follow it as a writer appends (acknowledged bytes only)."""
    from feitian.dfs import remote_file

    async def action(client: Any) -> None:
        status = await remote_file(client, "tail", remote)
        start = max(0, status.length - 1024) if offset is None else offset
        async for data in client.tail(status.path, start, follow=follow):
            sys.stdout.buffer.write(data)
            sys.stdout.flush()

    with contextlib.suppress(KeyboardInterrupt) if follow else contextlib.nullcontext():  # how -f ends
        _run(cluster_dir, identity, action, "tail")


# -- the namespace -----------------------------------------------------------------------------------------------


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

    entries = _run(cluster_dir, identity, action, "ls")
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
    status = _run(cluster_dir, identity, lambda c: c.stat(path), "stat")
    if as_json:
        emit_json(status)
        return
    for key in ("path", "kind", "length", "replication", "file_type", "chunk_size_bytes", "chunk_count", "entries"):
        click.echo(f"{key:18} {getattr(status, key)}")
    click.echo(f"{'mtime':18} {_local_time(status.mtime_ns)}")
    if status.lease_holder:
        expires = _local_time(status.lease_expires_ns)
        click.echo(f"{'open for writing':18} by {status.lease_holder} ({status.lease_mode}, lease until {expires})")


def _local_time(ns: int) -> str:
    return time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(ns / 1e9))


@dfs.command()
@click.argument("path", default="/")
@click.option("-s", "--summary", is_flag=True, help="One line for PATH as a whole, not one per entry.")
@cluster_option
@identity_option
@json_option
def du(path: str, summary: bool, cluster_dir: str | None, identity: str | None, as_json: bool) -> None:
    """Space used under PATH: for each entry of a directory (or the file), its bytes and its replicated bytes
    (length x replication: the disk its replicas take)."""
    reply = _run(cluster_dir, identity, lambda c: c.disk_usage(path), "du")
    if as_json:
        emit_json(reply.total if summary else reply)
        return
    rows = [reply.total] if summary or str(reply.total.kind) == "file" else list(reply.entries)
    table(
        ["BYTES", "REPLICATED", "FILES", "PATH"],
        [[u.bytes, u.replicated_bytes, u.files, u.path + ("/" if str(u.kind) == "dir" else "")] for u in rows],
    )


@dfs.command()
@click.argument("path")
@cluster_option
@identity_option
@json_option
def locate(path: str, cluster_dir: str | None, identity: str | None, as_json: bool) -> None:
    """Where the chunks of the file PATH live: each chunk's byte range, version, and its replicas with their
    racks and states (good, unconfirmed, stale, corrupt, lost, dead). Like HDFS fsck -files -blocks -locations."""
    reply = _run(cluster_dir, identity, lambda c: c.placement(path), "locate")
    if as_json:
        emit_json(reply)
        return
    table(
        ["CHUNK", "ID", "VERSION", "OFFSET", "LENGTH", "SEALED", "RACKS", "REPLICAS"],
        [
            [
                c.index,
                c.chunk_id,
                c.version,
                c.file_offset,
                c.length,
                "yes" if c.sealed else "no",
                f"{c.racks}/{c.wanted_racks}",
                " ".join(f"{r.server_id}@{r.rack}:{r.state}" for r in c.replicas),
            ]
            for c in reply.chunks
        ],
    )
    note(f"{reply.status.path}: {reply.status.length} bytes in {len(reply.chunks)} chunk(s)")


@dfs.command()
@click.argument("path")
@click.option("-r", "--recursive", is_flag=True, help="Delete a directory and everything below it.")
@cluster_option
@identity_option
def rm(path: str, recursive: bool, cluster_dir: str | None, identity: str | None) -> None:
    """Delete a file or an (empty, unless -r) directory; its chunks are freed."""
    result = _run(cluster_dir, identity, lambda c: c.delete(path, recursive=recursive), "rm")
    note(f"deleted {result.files} file(s), {result.dirs} dir(s), {result.freed_chunks} chunk(s)")


@dfs.command()
@click.argument("src")
@click.argument("dst")
@click.option("-f", "--force", is_flag=True, help="Replace DST if it is a file.")
@cluster_option
@identity_option
def mv(src: str, dst: str, force: bool, cluster_dir: str | None, identity: str | None) -> None:
    """Rename SRC to DST, atomically (a file or a whole directory); an existing directory DST (or one ending
    with /) receives SRC under its name."""
    from feitian.dfs import into_remote_dir

    async def action(client: Any) -> str:
        target = await into_remote_dir(client, "mv", posixpath.basename(src.rstrip("/")), dst)
        await client.rename(src, target, overwrite=force)
        return target

    target = _run(cluster_dir, identity, action, "mv")
    if target != dst.rstrip("/"):
        note(f"{src} -> {target}")


@dfs.command()
@click.argument("path")
@click.option(
    "-p",
    "--parents/--no-parents",
    default=True,
    help="Create missing parent directories (the default; -p is accepted as in mkdir -p). With --no-parents a "
    "missing parent is an error, and so is an existing PATH.",
)
@cluster_option
@identity_option
def mkdir(path: str, parents: bool, cluster_dir: str | None, identity: str | None) -> None:
    """Create a directory (an existing one is fine, unless --no-parents)."""
    _run(cluster_dir, identity, lambda c: c.mkdir(path, parents=parents), "mkdir")


# -- administration ----------------------------------------------------------------------------------------------


@dfs.command()
@cluster_option
@identity_option
@json_option
def fsck(cluster_dir: str | None, identity: str | None, as_json: bool) -> None:
    """Check every chunk: missing (no good replica), corrupt copies, under-replicated (exit 1 if any), and
    misplaced (replicas on fewer racks than the live racks allow: reported, repaired by moves, still healthy)."""
    report = _run(cluster_dir, identity, lambda c: c.fsck(), "fsck")
    if as_json:
        emit_json(report)
    else:
        click.echo(f"files {report.files}, chunks {report.chunks}, copies in flight {report.copies_in_flight}")
        for what in (
            "missing",
            "corrupt",
            "under_replicated",
            "over_replicated",
            "misplaced",
            "stale",
            "dead_servers",
        ):
            items = getattr(report, what)
            click.echo(f"{what:18} {len(items)}" + (f"  {list(items)[:10]}" if items else ""))
        verdict = "HEALTHY" if report.healthy else "NOT HEALTHY"
        if report.misplaced:
            verdict += f" ({len(report.misplaced)} chunk(s) misplaced across racks; being moved)"
        click.echo(verdict)
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
    """The chunk servers: rack, liveness, state (active, decommissioning, decommissioned), usage, replicas."""
    rows = _run(cluster_dir, identity, lambda c: c.servers(), "servers")
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
    reply = _run(cluster_dir, identity, lambda c: c.balance(), "balance")
    if as_json:
        emit_json(reply)
    else:
        note(f"started {reply.moves_started} move(s); utilization spread was {reply.spread_before:.3f}")


@dfs.command()
@click.argument("node")
@click.option("--cancel", is_flag=True, help="Put NODE back in service instead (the same as `recommission`).")
@click.option(
    "--wait",
    "wait_s",
    type=click.FloatRange(min=0),
    default=0.0,
    help="Wait up to this many seconds for it to be empty (exit 3 if it is not by then).",
)
@cluster_option
@identity_option
def decommission(node: str, cancel: bool, wait_s: float, cluster_dir: str | None, identity: str | None) -> None:
    """Migrate every chunk off the chunk server NODE (it gets no new ones); once empty it is decommissioned: it
    stays out of service, even while it runs, until `feitian dfs recommission NODE`."""

    async def action(client: Any) -> None:
        import asyncio

        held: int = await client.decommission(node, cancel=cancel)
        note(f"{node}: {'back in service' if cancel else 'decommissioning'}, {held} replicas on it")
        deadline = time.monotonic() + wait_s
        while not cancel and wait_s > 0:
            server = {s.server_id: s for s in await client.servers()}.get(node)
            if server is None or server.state == "decommissioned":
                note(f"{node} holds nothing and is decommissioned (`feitian dfs recommission {node}` undoes it)")
                return
            if time.monotonic() > deadline:
                raise UnavailableError(f"{node} still holds {server.chunks} replicas after {wait_s:.0f}s")
            await asyncio.sleep(0.5)

    _run(cluster_dir, identity, action, "decommission")


@dfs.command()
@click.argument("node")
@cluster_option
@identity_option
def recommission(node: str, cluster_dir: str | None, identity: str | None) -> None:
    """Put the chunk server NODE (decommissioning or decommissioned) back in service: it gets new chunks again
    and the balancer moves some to it."""
    held = _run(cluster_dir, identity, lambda c: c.recommission(node), "recommission")
    note(f"{node}: back in service, {held} replicas on it")


@dfs.command()
@cluster_option
@identity_option
@json_option
def status(cluster_dir: str | None, identity: str | None, as_json: bool) -> None:
    """Each master replica: role, term, applied index, files, chunks. Exits 3 if any does not answer."""
    from feitian.deploy import master_addresses

    addresses = master_addresses(cluster_dir)

    async def action(client: Any) -> list[Any]:
        rows: list[Any] = []
        for address in addresses:
            try:
                rows.append(await client.master_status(address))
            except FeitianError as exc:
                rows.append({"address": address, "error": str(exc)})
        return rows

    rows = _run(cluster_dir, identity, action, "status")
    if as_json:
        emit_json(rows)
    else:
        table(
            ["NODE", "ROLE", "TERM", "APPLIED", "FILES", "CHUNKS", "SERVERS"],
            [
                [r["address"], f"unreachable: {r['error']}", "", "", "", "", ""]
                if isinstance(r, dict)
                else [r.node, r.role, r.term, r.applied_index, r.files, r.chunks, r.servers]
                for r in rows
            ],
        )
    unreachable = sum(isinstance(r, dict) for r in rows)
    if unreachable:
        note(f"{unreachable} of {len(rows)} master replica(s) unreachable")
        sys.exit(EXIT_UNAVAILABLE)


__all__ = ["dfs"]
