"""``feitian pkg upload|ls|get|rm|gc``: Fuxi's packages (FUXI-6) from the shell; docs/pkg.md.

A package is stored in Pangu (the blob) and Nuwa (its versions) of the local cluster (``--cluster``), acting as
``--identity``. An upload is packed and checked locally first, so a bad directory or archive is refused (exit 2,
naming the entry and the problem) before the cluster is contacted.
"""

from __future__ import annotations

import contextlib
import datetime
import os
import tempfile
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any, TypeVar

import click
import msgspec

from feitian.cli.cluster import cluster_option
from feitian.cli.identity import identity_option
from feitian.cli.output import emit_json, note, table
from feitian.runtime.eventloop import run
from feitian.sched import PackageLimits, PackageRef, PackageStore, pack, validate_name

T = TypeVar("T")
json_option = click.option("--json", "as_json", is_flag=True, help="Print JSON.")


@contextlib.asynccontextmanager
async def cluster_store(cluster_dir: str | None, identity: str | None) -> AsyncIterator[PackageStore]:
    """A :class:`PackageStore` on the Nuwa and Pangu of the local cluster at ``cluster_dir``."""
    from feitian.cli.coord import cluster_coord
    from feitian.deploy import LocalCluster, resolve_cluster_dir
    from feitian.dfs import connect_local

    lc = LocalCluster(resolve_cluster_dir(cluster_dir))
    async with cluster_coord(lc, identity, name="feitian-pkg") as nuwa:
        dfs = await connect_local(cluster_dir, identity=identity, name="feitian-pkg")
        try:
            yield PackageStore(nuwa, dfs)
        finally:
            await dfs.rpc.close()


def _run(cluster_dir: str | None, identity: str | None, action: Callable[[PackageStore], Awaitable[T]]) -> T:
    async def go() -> T:
        async with cluster_store(cluster_dir, identity) as store:
            return await action(store)

    return run(go())


def ref_json(ref: PackageRef) -> dict[str, Any]:
    return {**msgspec.to_builtins(ref), "spec": ref.spec}


def _when(created_s: float) -> str:
    return datetime.datetime.fromtimestamp(created_s, datetime.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _show(refs: list[PackageRef], as_json: bool) -> None:
    if as_json:
        emit_json([ref_json(r) for r in refs])
        return
    rows = [(r.name, r.version, r.digest[:16], r.size, r.unpacked_bytes, r.files, _when(r.created_s)) for r in refs]
    table(["NAME", "VERSION", "DIGEST", "BYTES", "UNPACKED", "FILES", "CREATED"], rows)


@click.group()
def pkg() -> None:
    """Packages: versioned, content-addressed archives that Tubo unpacks before starting a process (docs/pkg.md)."""


@pkg.command()
@click.argument("name")
@click.argument("source", type=click.Path(path_type=Path))
@click.option("--version", "version", type=click.IntRange(min=1), default=None, help="This version number.")
@click.option(
    "--max-bytes",
    type=click.IntRange(min=1),
    default=PackageLimits.max_unpacked_bytes,
    show_default=True,
    help="Refuse a package whose files hold more bytes than this.",
)
@click.option(
    "--max-files",
    type=click.IntRange(min=1),
    default=PackageLimits.max_files,
    show_default=True,
    help="Refuse a package with more entries than this.",
)
@json_option
@cluster_option
@identity_option
def upload(
    name: str,
    source: Path,
    version: int | None,
    max_bytes: int,
    max_files: int,
    as_json: bool,
    cluster_dir: str | None,
    identity: str | None,
) -> None:
    """Store SOURCE — a directory, or a .tar, .tar.gz, .tgz, .tar.bz2, .tar.xz or .zip file — as the next version
    of package NAME (or as --version). Content already stored (by any name) is not stored again."""
    validate_name(name)
    limits = PackageLimits(max_unpacked_bytes=max_bytes, max_files=max_files)
    with tempfile.TemporaryFile(prefix="feitian-pkg-") as spool:
        info = pack(source, spool, limits)

        async def action(store: PackageStore) -> PackageRef:
            return await store.upload_packed(name, spool, info, version=version)

        ref = _run(cluster_dir, identity, action)
    if as_json:
        emit_json(ref_json(ref))
    else:
        click.echo(ref.spec)
        note(f"{ref.spec}: sha256 {ref.digest}, {ref.files} entries, {ref.unpacked_bytes} bytes ({ref.size} stored)")


@pkg.command(name="ls")
@click.argument("name", required=False)
@json_option
@cluster_option
@identity_option
def ls(name: str | None, as_json: bool, cluster_dir: str | None, identity: str | None) -> None:
    """List every version of every package, or of package NAME (exit 4 if it has none)."""
    if name is not None:
        validate_name(name)

    async def action(store: PackageStore) -> list[PackageRef]:
        return await store.list(name)

    _show(_run(cluster_dir, identity, action), as_json)


@pkg.command()
@click.argument("spec", metavar="NAME[@VERSION]")
@click.argument("dest", type=click.Path(path_type=Path))
@json_option
@cluster_option
@identity_option
def get(spec: str, dest: Path, as_json: bool, cluster_dir: str | None, identity: str | None) -> None:
    """Unpack a package (NAME: its latest version) into the new directory DEST, its digest verified."""

    async def action(store: PackageStore) -> PackageRef:
        return await store.fetch_to(spec, dest)

    ref = _run(cluster_dir, identity, action)
    if as_json:
        emit_json({**ref_json(ref), "dest": os.path.abspath(dest)})
    else:
        note(f"{ref.spec} -> {dest}")


@pkg.command()
@click.argument("spec", metavar="NAME[@VERSION]")
@json_option
@cluster_option
@identity_option
def rm(spec: str, as_json: bool, cluster_dir: str | None, identity: str | None) -> None:
    """Remove version NAME@VERSION, or every version of NAME; a stored archive goes once no version uses it."""

    async def action(store: PackageStore) -> list[PackageRef]:
        return await store.remove(spec)

    removed = _run(cluster_dir, identity, action)
    if as_json:
        emit_json([ref_json(r) for r in removed])
    else:
        for ref in removed:
            click.echo(ref.spec)


@pkg.command()
@json_option
@cluster_option
@identity_option
def gc(as_json: bool, cluster_dir: str | None, identity: str | None) -> None:
    """Delete stored archives no version uses (left by a removal that died midway) and abandoned uploads."""

    async def action(store: PackageStore) -> list[str]:
        return await store.collect_garbage()

    deleted = _run(cluster_dir, identity, action)
    if as_json:
        emit_json({"deleted": deleted})
    else:
        for digest in deleted:
            click.echo(digest)
        note(f"{len(deleted)} unused archives deleted")
