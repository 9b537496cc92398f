"""Packages (FUXI-6) against a secured local cluster of real processes (Nuwa + Pangu, as `cluster up` makes them):
`feitian pkg` as a subprocess, and the Python API a Tubo uses — the store and the machine's cache on top of it."""

from __future__ import annotations

import asyncio
import io
import json
import stat
import tarfile
from collections.abc import Iterator
from pathlib import Path
from typing import IO

import pytest

from feitian.cli.pkg import cluster_store
from feitian.coord import DeleteOp
from feitian.deploy.cluster import LocalCluster, coord_specs, dfs_specs
from feitian.errors import NotFoundError
from feitian.sched.pkg import PackageCache
from feitian.testing.cli import feitian
from feitian.testing.waiting import wait_for_condition

BLOBS = "/feitian/packages/blobs"


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """What `feitian cluster up` makes, reduced to what packages need — the authority, one Nuwa replica, one
    Pangu master, three chunk servers on three racks — and up once every chunk server is live."""
    directory = str(tmp_path_factory.mktemp("pkg") / "cluster")
    lc = LocalCluster(directory)
    lc.up([*coord_specs(1), *dfs_specs(1, 3)], timeout_s=60, secure=True)
    try:

        async def servers_live() -> None:
            async with cluster_store(directory, None) as store:

                async def three() -> bool:
                    return sum(s.live for s in await store.dfs.servers()) == 3

                await wait_for_condition(three, 60, "3 live chunk servers")

        asyncio.run(servers_live())
        yield directory
    finally:
        lc.down(grace_s=5)


def pkg(cluster: str, *args: str, check: bool = True) -> str:
    return feitian("pkg", *args, "--cluster", cluster, check=check, timeout=120).stdout


def make_tree(root: Path, marker: str) -> Path:
    (root / "bin").mkdir(parents=True)
    (root / "bin" / "run").write_text(f"#!/bin/sh\necho {marker}\n")
    (root / "bin" / "run").chmod(0o755)
    (root / "conf.toml").write_text(f"marker = '{marker}'\n")
    return root


async def blobs(cluster: str) -> list[str]:
    async with cluster_store(cluster, None) as store:
        try:
            return [e.name for e in await store.dfs.list(BLOBS)]
        except NotFoundError:
            return []


def test_the_same_content_uploaded_twice_is_stored_once(cluster: str, tmp_path: Path) -> None:
    tree = make_tree(tmp_path / "tree", "twice")
    with tarfile.open(tmp_path / "tree.tgz", "w:gz") as tf:
        tf.add(tree, arcname=".")
    before = asyncio.run(blobs(cluster))
    first = json.loads(pkg(cluster, "upload", "twice", str(tree), "--json"))
    second = json.loads(pkg(cluster, "upload", "twice", str(tmp_path / "tree.tgz"), "--json"))
    assert (first["version"], second["version"]) == (1, 2)
    assert first["digest"] == second["digest"]
    after = asyncio.run(blobs(cluster))
    assert sorted(after) == sorted({*before, first["digest"]})  # one blob more, not two
    listed = json.loads(pkg(cluster, "ls", "twice", "--json"))
    assert [(r["spec"], r["digest"]) for r in listed] == [("twice@1", first["digest"]), ("twice@2", first["digest"])]
    assert "twice" in pkg(cluster, "ls")
    taken = feitian("pkg", "upload", "twice", str(tree), "--version", "1", "--cluster", cluster)
    assert taken.returncode == 5 and "error: package twice@1 already exists" in taken.stderr
    out = tmp_path / "got"
    pkg(cluster, "get", "twice", str(out))
    assert (out / "conf.toml").read_text() == "marker = 'twice'\n"
    assert stat.S_IMODE((out / "bin" / "run").stat().st_mode) == 0o755  # a writable copy, still executable


async def test_a_machine_s_cache_fetches_the_latest_version_from_pangu(cluster: str, tmp_path: Path) -> None:
    async with cluster_store(cluster, None) as store:
        await store.upload("cached", make_tree(tmp_path / "v1", "one"))
        await store.upload("cached", make_tree(tmp_path / "v2", "two"))
        latest = await store.resolve("cached")
        assert latest.version == 2 and (await store.resolve("cached@1")).digest != latest.digest
        cache = PackageCache(tmp_path / "cache", 1 << 20, store.open_blob)
        await cache.open()
        try:
            async with cache.use(latest) as path:
                assert (path / "conf.toml").read_text() == "marker = 'two'\n"
                assert stat.S_IMODE((path / "bin" / "run").stat().st_mode) == 0o555
                assert stat.S_IMODE((path / "conf.toml").stat().st_mode) == 0o444
                assert stat.S_IMODE(path.stat().st_mode) == 0o555
                proc = await asyncio.create_subprocess_exec(path / "bin" / "run", stdout=asyncio.subprocess.PIPE)
                assert (await proc.communicate())[0] == b"two\n"
        finally:
            await cache.close()


async def test_a_blob_is_deleted_once_no_version_uses_it(cluster: str, tmp_path: Path) -> None:
    async with cluster_store(cluster, None) as store:
        tree = make_tree(tmp_path / "tree", "shared")
        a = await store.upload("share-a", tree)
        b = await store.upload("share-b", tree)
        assert a.digest == b.digest
        assert [r.spec for r in await store.remove("share-a")] == ["share-a@1"]
        assert await store.dfs.exists(f"{BLOBS}/{a.digest}")  # share-b still uses it
        assert (await store.resolve("share-b")).digest == a.digest
        await store.remove("share-b@1")
        assert not await store.dfs.exists(f"{BLOBS}/{a.digest}")
        assert not (await store.coord.exists(f"/feitian/packages/refs/{a.digest}/")).exists
        with pytest.raises(NotFoundError, match="package share-b: not found"):
            await store.resolve("share-b")
        # uploaded again after its collection: stored again, under a number never given before
        again = await store.upload("share-a", tree)
        assert again.version == 2 and await store.dfs.exists(f"{BLOBS}/{a.digest}")
        assert [r.spec for r in await store.list("share-a")] == ["share-a@2"]
        assert (await store.upload("share-a", tree, version=10)).version == 10
        assert (await store.upload("share-a", tree)).version == 11  # counted on from the highest given


async def test_a_removal_between_an_upload_s_blob_check_and_its_commit_does_not_lose_the_blob(
    cluster: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The interleaving the protocol exists for, forced: the uploader finds the blob already stored, then the
    last version using it is removed (and the blob collected) before the uploader commits."""
    tree = make_tree(tmp_path / "tree", "race")
    async with cluster_store(cluster, None) as remover, cluster_store(cluster, None) as uploader:
        old = await remover.upload("race-old", tree)
        real_ensure = uploader._ensure_blob
        calls: list[bool] = []

        async def ensure_then_race(digest: str, size: int, spool: IO[bytes]) -> bool:
            wrote = await real_ensure(digest, size, spool)
            calls.append(wrote)
            if len(calls) == 1:
                assert [r.spec for r in await remover.remove("race-old")] == ["race-old@1"]
                assert not await remover.dfs.exists(f"{BLOBS}/{digest}")  # collected
            return wrote

        monkeypatch.setattr(uploader, "_ensure_blob", ensure_then_race)
        new = await uploader.upload("race-new", tree)
        assert new.digest == old.digest
        assert calls == [False, True]  # found it stored; after the failed commit, stored it again
        assert await uploader.dfs.exists(f"{BLOBS}/{new.digest}")
        # and with both racing freely
        for round_ in range(3):
            await remover.upload("race-old", tree)
            _, new = await asyncio.gather(remover.remove("race-old"), uploader.upload(f"race-free-{round_}", tree))
            assert await uploader.dfs.exists(f"{BLOBS}/{new.digest}"), f"round {round_}: committed without its blob"


def test_bad_input_is_one_error_line_with_its_exit_code(cluster: str, tmp_path: Path) -> None:
    junk = tmp_path / "junk.tgz"
    junk.write_bytes(b"not an archive\n" * 10)
    evil = tmp_path / "evil.tar"
    with tarfile.open(evil, "w") as tf:
        info = tarfile.TarInfo("../../etc/cron.d/x")
        info.size = 3
        tf.addfile(info, io.BytesIO(b"bad"))
    for args, code, message in [
        (["upload", "app", str(junk)], 2, f"error: package '{junk}': not an archive"),
        (["upload", "app", str(evil)], 2, "entry '../../etc/cron.d/x': '..' in the path"),
        (["upload", "app", str(tmp_path / "missing")], 4, "no such file or directory"),
        (["upload", "no/slash", str(junk)], 2, "error: package name 'no/slash'"),
        (["get", "nothere@3", str(tmp_path / "x")], 4, "error: package nothere@3: no such version"),
        (["get", "app@x", str(tmp_path / "x")], 2, "the version after '@' is not a number"),
        (["rm", "nothere"], 4, "error: package nothere: not found"),
        (["get", "nothere", str(tmp_path)], 5, f"error: get nothere: {tmp_path} already exists"),
        (["get", "nothere", str(tmp_path / "no" / "dir")], 4, "is not a directory"),
        (["ls", "nothere"], 4, "error: package nothere: not found"),
    ]:
        proc = feitian("pkg", *args, "--cluster", cluster)
        assert proc.returncode == code, (args, proc.stderr)
        assert message in proc.stderr, (args, proc.stderr)
        assert proc.stderr.startswith("error: ") and "Traceback" not in proc.stderr, proc.stderr


async def test_gc_deletes_what_a_remover_that_died_midway_left(cluster: str, tmp_path: Path) -> None:
    async with cluster_store(cluster, None) as store:
        ref = await store.upload("orphan", make_tree(tmp_path / "tree", "orphan"))
        kept = await store.upload("kept", make_tree(tmp_path / "kept", "kept"))
        # the remover's transaction, then its death (its ephemeral gc marker went with its session)
        await store.coord.txn(
            [
                DeleteOp(path=f"/feitian/packages/names/orphan/{ref.version}"),
                DeleteOp(path=f"/feitian/packages/refs/{ref.digest}/{ref.spec}"),
                DeleteOp(path=f"/feitian/packages/refs/{ref.digest}/"),
            ]
        )
        assert await store.dfs.exists(f"{BLOBS}/{ref.digest}")
    collected = json.loads(pkg(cluster, "gc", "--json"))
    assert ref.digest in collected["deleted"] and kept.digest not in collected["deleted"]
    async with cluster_store(cluster, None) as store:
        assert not await store.dfs.exists(f"{BLOBS}/{ref.digest}")
        assert await store.dfs.exists(f"{BLOBS}/{kept.digest}")
        assert (await store.resolve("kept")).digest == kept.digest
