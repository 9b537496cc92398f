"""``feitian kv put|get|rm|status``: the replicated key-value store of a local cluster (the consensus layer's
workload), so its behaviour can be seen from the shell."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

import click

from feitian.cli.cluster import cluster_option
from feitian.cli.identity import identity_option
from feitian.cli.output import emit_json, table
from feitian.deploy import LocalCluster, resolve_cluster_dir
from feitian.errors import FeitianError, NotFoundError, UnavailableError
from feitian.examples import KvClient, Stats
from feitian.rpc import Client, ClientConfig
from feitian.runtime.eventloop import run

T = TypeVar("T")


def _with_kv(cluster_dir: str | None, identity: str | None, action: Callable[[KvClient, Client], Awaitable[T]]) -> T:
    lc = LocalCluster(resolve_cluster_dir(cluster_dir))
    addresses = [p.addresses[0] for p in lc.load().processes if p.role == "kv" and p.addresses]
    if not addresses:
        raise NotFoundError(f"the cluster at {lc.dir} runs no kv replicas", hint="start it with `cluster up --kv 3`")

    async def go() -> T:
        async with await lc.client(ClientConfig(name="feitian-kv", connect_timeout_s=1.0), identity=identity) as c:
            return await action(KvClient(c, addresses), c)

    return run(go())


@click.group()
def kv() -> None:
    """The replicated key-value store (3 replicas by default in `feitian cluster up`)."""


@kv.command()
@click.argument("key")
@click.argument("value")
@click.option(
    "--expect-version",
    type=click.IntRange(min=0),
    default=None,
    help="Only if the key is at this version (0: absent).",
)
@cluster_option
@identity_option
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
def put(
    key: str, value: str, expect_version: int | None, cluster_dir: str | None, identity: str | None, as_json: bool
) -> None:
    """Write KEY=VALUE through the leader; prints the new version once a majority has it on disk."""
    version = _with_kv(
        cluster_dir,
        identity,
        lambda k, _c: k.put(key, value.encode(), -1 if expect_version is None else expect_version),
    )
    if as_json:
        emit_json({"key": key, "version": version})
    else:
        click.echo(f"{key} version {version}")


@kv.command()
@click.argument("key")
@click.option("--stale", is_flag=True, help="Answer from any replica without confirming it is current.")
@cluster_option
@identity_option
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
def get(key: str, stale: bool, cluster_dir: str | None, identity: str | None, as_json: bool) -> None:
    """Read KEY (linearizable unless --stale). Exits 4 if it does not exist."""
    reply = _with_kv(cluster_dir, identity, lambda k, _c: k.get(key, stale=stale))
    if not reply.found:
        raise NotFoundError(f"get {key}: no such key")
    if as_json:
        emit_json({"key": key, "value": reply.value.decode("utf-8", "replace"), "version": reply.version})
    else:
        click.echo(reply.value.decode("utf-8", "replace"))


@kv.command()
@click.argument("key")
@cluster_option
@identity_option
def rm(key: str, cluster_dir: str | None, identity: str | None) -> None:
    """Delete KEY. Exits 4 if it did not exist."""
    if not _with_kv(cluster_dir, identity, lambda k, _c: k.delete(key)):
        raise NotFoundError(f"rm {key}: no such key")


@kv.command()
@cluster_option
@identity_option
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
def status(cluster_dir: str | None, identity: str | None, as_json: bool) -> None:
    """Each replica's role, term, commit and applied index, fsyncs and entries per fsync."""

    async def collect(k: KvClient, c: Client) -> list[Any]:
        rows: list[Any] = []
        for address in k.addresses:
            try:
                rows.append((address, await c.call(address, Stats(), timeout=2)))
            except FeitianError as exc:
                rows.append((address, exc))
        return rows

    rows = _with_kv(cluster_dir, identity, collect)
    if as_json:
        emit_json(
            [{"address": a, **({"error": str(s)} if isinstance(s, Exception) else {"stats": s})} for a, s in rows]
        )
    else:
        _status_table(rows)
    unreachable = [a for a, s in rows if isinstance(s, Exception)]
    if unreachable:  # as `coord status` and `cluster status`: exit 3
        raise UnavailableError(
            f"{len(unreachable)} of {len(rows)} kv replica(s) do not answer: {', '.join(unreachable)}",
            hint="`feitian cluster status` shows which are stopped; `feitian cluster start NODE` starts one again",
        )


def _status_table(rows: list[Any]) -> None:
    table(
        ["ADDRESS", "ROLE", "TERM", "COMMIT", "APPLIED", "SNAPSHOT", "FSYNCS", "ENTRIES/FSYNC"],
        [
            [a, f"unreachable: {s}", "", "", "", "", "", ""]
            if isinstance(s, Exception)
            else [
                a,
                s.role,
                s.term,
                s.commit_index,
                s.applied_index,
                s.snapshot_index,
                s.fsyncs,
                f"{s.entries_persisted / s.fsyncs:.1f}" if s.fsyncs else "-",
            ]
            for a, s in rows
        ],
    )
