"""The machine's package cache against a local blob source: one download per digest, verified before use,
least recently used out but never a pinned package, and a restart that finds what a crash left."""

from __future__ import annotations

import asyncio
import io
import os
import stat
import sys
import time
from collections.abc import AsyncIterator
from pathlib import Path

import msgspec
import pytest

from feitian.errors import ConflictError, DataCorruptionError, InvalidArgumentError, NotFoundError, OverloadedError
from feitian.sched.pkg import PackageCache, PackageRef
from feitian.sched.pkg.archive import pack


class Source:
    """Blobs by digest, streamed in small pieces; counts fetches; ``gate`` holds every fetch until set."""

    def __init__(self) -> None:
        self.blobs: dict[str, bytes] = {}
        self.fetches: list[str] = []
        self.gate = asyncio.Event()
        self.gate.set()

    async def fetch(self, digest: str) -> AsyncIterator[bytes]:
        self.fetches.append(digest)
        await self.gate.wait()
        blob = self.blobs[digest]
        for at in range(0, len(blob), 100):
            yield blob[at : at + 100]

    def add(self, tmp: Path, name: str, files: dict[str, bytes]) -> PackageRef:
        tree = tmp / "src" / name
        for rel, data in files.items():
            (tree / rel).parent.mkdir(parents=True, exist_ok=True)
            (tree / rel).write_bytes(data)
        out = io.BytesIO()
        info = pack(tree, out)
        self.blobs[info.digest] = out.getvalue()
        return PackageRef(
            name=name,
            version=1,
            digest=info.digest,
            size=info.size,
            unpacked_bytes=info.unpacked_bytes,
            files=info.files,
            created_s=0.0,
        )


@pytest.fixture
def source() -> Source:
    return Source()


async def opened(root: Path, max_bytes: int, source: Source) -> PackageCache:
    cache = PackageCache(root, max_bytes, source.fetch)
    await cache.open()
    return cache


async def test_concurrent_ensures_download_once_and_share_the_read_only_tree(tmp_path: Path, source: Source) -> None:
    ref = source.add(tmp_path, "app", {"bin/run": b"#!/bin/sh\n", "conf/a.toml": b"x = 1\n"})
    cache = await opened(tmp_path / "cache", 10_000, source)
    source.gate.clear()
    waiting = [asyncio.create_task(cache.ensure(ref)) for _ in range(5)]
    await asyncio.sleep(0)  # every ensure is waiting on the one download
    source.gate.set()
    paths = await asyncio.gather(*waiting)
    assert source.fetches == [ref.digest]
    assert set(paths) == {tmp_path / "cache" / ref.digest}
    path = paths[0]
    assert (path / "conf" / "a.toml").read_bytes() == b"x = 1\n"
    assert stat.S_IMODE((path / "conf" / "a.toml").stat().st_mode) == 0o444
    assert stat.S_IMODE((path / "conf").stat().st_mode) == 0o555
    assert stat.S_IMODE(path.stat().st_mode) == 0o555
    assert await cache.ensure(ref) == path and source.fetches == [ref.digest]  # cached now
    assert list((tmp_path / "cache" / "tmp").iterdir()) == []
    await cache.close()


async def test_a_blob_that_does_not_match_its_digest_is_refused_and_leaves_nothing(
    tmp_path: Path, source: Source
) -> None:
    good = source.add(tmp_path, "good", {"a": b"1" * 50})
    other = source.add(tmp_path, "other", {"a": b"2" * 50})
    assert len(source.blobs[good.digest]) == len(source.blobs[other.digest])
    source.blobs[good.digest] = source.blobs[other.digest]  # same size, other content
    cache = await opened(tmp_path / "cache", 10_000, source)
    with pytest.raises(DataCorruptionError, match=f"is not the expected {good.digest}"):
        await cache.ensure(good)
    source.blobs[other.digest] = source.blobs[other.digest] + b"\0"  # a longer blob: refused as it arrives
    with pytest.raises(DataCorruptionError, match="longer than its recorded"):
        await cache.ensure(other)
    understated = msgspec.structs.replace(other, unpacked_bytes=other.unpacked_bytes - 1)  # a lying record
    source.blobs[other.digest] = source.blobs[other.digest][:-1]
    with pytest.raises(DataCorruptionError, match=f"more than {other.unpacked_bytes - 1} bytes of files"):
        await cache.ensure(understated)
    assert sorted(p.name for p in (tmp_path / "cache").iterdir()) == [".lock", "tmp"]
    assert list((tmp_path / "cache" / "tmp").iterdir()) == []
    assert cache.packages() == []
    await cache.close()


async def test_least_recently_used_goes_first_but_never_a_pinned_package(tmp_path: Path, source: Source) -> None:
    a, b, c, d = (source.add(tmp_path, n, {"f": n.encode() * 100}) for n in "abcd")  # 100 bytes each
    cache = await opened(tmp_path / "cache", 250, source)  # room for two
    await cache.ensure(a, pin=True)  # the oldest, but running
    await cache.ensure(b)
    await cache.ensure(c)  # b goes: a is pinned
    assert [p.digest for p in cache.packages()] == [a.digest, c.digest]
    assert not (tmp_path / "cache" / b.digest).exists()
    async with cache.use(c) as path:
        assert (path / "f").read_bytes() == b"c" * 100
        with pytest.raises(OverloadedError, match=r"no room for d@1 \(100 bytes\): 200 bytes are pinned"):
            await cache.ensure(d)
    cache.unpin(a.digest)
    await cache.ensure(c)  # c is now the most recently used: a goes
    await cache.ensure(d)
    assert [p.digest for p in cache.packages()] == [c.digest, d.digest]
    assert cache.used_bytes == 200
    with pytest.raises(InvalidArgumentError, match="not pinned"):
        cache.unpin(a.digest)
    with pytest.raises(NotFoundError):
        cache.pin(a.digest)
    big = source.add(tmp_path, "big", {"f": b"x" * 300})
    with pytest.raises(InvalidArgumentError, match="more than the package cache's max_bytes 250"):
        await cache.ensure(big)
    await cache.close()


async def test_a_restart_keeps_the_packages_and_their_order_and_redoes_what_a_crash_left(
    tmp_path: Path, source: Source
) -> None:
    a, b, c = (source.add(tmp_path, n, {"f": n.encode() * 100}) for n in "abc")
    root = tmp_path / "cache"
    cache = await opened(root, 250, source)
    await cache.ensure(a)
    await cache.ensure(b)
    os.utime(root / f"{a.digest}.ready", (time.time() + 5, time.time() + 5))  # a used last, as an ensure does
    with pytest.raises(ConflictError, match="used by another process"):
        await opened(root, 250, source)
    await cache.close()
    # What a crash leaves: c renamed into place but not marked ready; a download and a staging dir in tmp/;
    # a marker whose directory is gone.
    partial = root / c.digest
    (partial / "half").mkdir(parents=True)
    (partial / "half" / "f").write_bytes(b"c" * 10)
    partial.chmod(0o555)
    (root / "tmp" / f"{c.digest}.7.blob").write_bytes(b"partial")
    (root / "tmp" / f"{c.digest}.7.dir").mkdir()
    (root / f"{'e' * 64}.ready").write_bytes(b"{}")
    fetched = len(source.fetches)
    cache = await opened(root, 250, source)
    assert [p.digest for p in cache.packages()] == [b.digest, a.digest]  # the order from the markers' mtimes
    assert not partial.exists() and not (root / f"{'e' * 64}.ready").exists()
    assert list((root / "tmp").iterdir()) == []
    assert await cache.ensure(a) == root / a.digest and len(source.fetches) == fetched  # no download
    path = await cache.ensure(c)  # b, the least recently used, goes; c is fetched again, whole
    assert (path / "f").read_bytes() == b"c" * 100 and not (path / "half").exists()
    assert [p.digest for p in cache.packages()] == [a.digest, c.digest]
    await cache.close()


async def test_a_failed_download_can_be_retried(tmp_path: Path, source: Source) -> None:
    ref = source.add(tmp_path, "app", {"f": b"x" * 10})
    blob = source.blobs.pop(ref.digest)
    cache = await opened(tmp_path / "cache", 10_000, source)
    with pytest.raises(KeyError):
        await cache.ensure(ref)
    source.blobs[ref.digest] = blob
    assert ((await cache.ensure(ref)) / "f").read_bytes() == b"x" * 10
    await cache.close()


CRASHING_CHILD = """
import asyncio, sys
from pathlib import Path
import msgspec
from feitian.sched.pkg import PackageCache, PackageRef

async def main() -> None:
    root, blob_path, ref_json = Path(sys.argv[1]), Path(sys.argv[2]), sys.argv[3]
    ref = msgspec.json.decode(ref_json, type=PackageRef)
    blob = blob_path.read_bytes()

    async def fetch(digest: str):
        yield blob[: len(blob) // 2]
        print("half", flush=True)
        await asyncio.Event().wait()  # killed here, half downloaded
        yield b""

    cache = PackageCache(root, 10_000, fetch)
    await cache.open()
    await cache.ensure(ref)

asyncio.run(main())
"""


async def test_a_cache_whose_owner_was_killed_mid_download_is_taken_over_and_finishes(
    tmp_path: Path, source: Source
) -> None:
    ref = source.add(tmp_path, "app", {"f": os.urandom(5000)})
    (tmp_path / "blob").write_bytes(source.blobs[ref.digest])
    root = tmp_path / "cache"
    child = await asyncio.create_subprocess_exec(
        sys.executable, "-c", CRASHING_CHILD, str(root), str(tmp_path / "blob"), msgspec.json.encode(ref).decode(),
        stdout=asyncio.subprocess.PIPE,
    )  # fmt: skip
    assert child.stdout is not None
    assert await asyncio.wait_for(child.stdout.readline(), 30) == b"half\n"
    assert [p.name for p in (root / "tmp").iterdir()] == [f"{ref.digest}.1.blob"]  # what the crash leaves
    child.kill()  # SIGKILL, by its pid
    assert await child.wait() == -9
    cache = await opened(root, 10_000, source)  # the lock died with its owner
    assert list((root / "tmp").iterdir()) == [] and cache.packages() == []
    path = await cache.ensure(ref)
    assert (path / "f").stat().st_size == 5000 and source.fetches == [ref.digest]
    await cache.close()
