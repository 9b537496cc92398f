"""A chunk server whose disk fills up (a small tmpfs): a clear disk_full error, nothing stored is damaged,
writers carry on with other servers, and the file system ends healthy.

Each test mounts its own tmpfs (we run as root; where mounting is not permitted the test is skipped with the
reason) and always unmounts it.
"""

from __future__ import annotations

import asyncio
import os
import subprocess
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest

from feitian.dfs.chunkserver.chunk_file import ChunkGeometry
from feitian.dfs.chunkserver.store import ChunkStore
from feitian.dfs.client.client import DfsClient
from feitian.dfs.messages.chunk import ReadChunk, WriteChunk
from feitian.dfs.messages.master import Locate, LocateReply
from feitian.errors import UnavailableError
from feitian.runtime.files import is_disk_full
from feitian.testing.dfs import TEST_CLIENT_CONFIG, DfsCluster

KiB, MiB = 1 << 10, 1 << 20


def mount_tmpfs(path: Path, size: str) -> None:
    path.mkdir(parents=True, exist_ok=True)
    done = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(path)], capture_output=True, text=True, check=False
    )
    if done.returncode != 0:
        reason = f"cannot mount a tmpfs here: {done.stderr.strip() or done.returncode}"
        print(reason)
        pytest.skip(reason)


@pytest.fixture
def small_disk(tmp_path: Path) -> Iterator[Path]:
    disk = tmp_path / "disk"
    mount_tmpfs(disk, "2m")
    try:
        yield disk
    finally:
        subprocess.run(["umount", str(disk)], check=True)


async def test_store_refuses_a_write_the_disk_cannot_take_and_keeps_what_it_has(small_disk: Path) -> None:
    store = ChunkStore(small_disk)
    await store.open()
    try:
        geometry = ChunkGeometry(1, 4 * MiB, 64 * KiB, False)
        piece = os.urandom(128 * KiB)
        written, seq, error = 0, 0, None
        while error is None:
            try:
                await store.write(geometry, 1, seq, written, piece, written)
                written, seq = written + len(piece), seq + 1
            except UnavailableError as exc:
                error = exc
        assert is_disk_full(error) and "disk full" in error.message and error.retryable
        assert written >= 512 * KiB
        chunk = store.chunks[1]
        assert chunk.replica.record.length == written and chunk.replica.record.next_seq == seq  # unchanged
        assert await store.read(1, 1, 0, written, written) == piece * seq  # every stored byte verifies
        with pytest.raises(UnavailableError, match="disk full"):
            await store.write(ChunkGeometry(2, 4 * MiB, 64 * KiB, False), 1, 0, 0, piece, 0)
        assert 2 not in store.chunks or store.chunks[2].replica.record.length == 0  # created empty, or not at all
        await store.delete([1])  # space comes back: writes succeed again
        await store.write(ChunkGeometry(3, 4 * MiB, 64 * KiB, False), 1, 0, 0, piece, 0)
    finally:
        await store.close()
    reopened = ChunkStore(small_disk)  # after a restart: what was acknowledged is there, intact
    assert await reopened.open() == []
    assert await reopened.read(3, 1, 0, len(piece), len(piece)) == piece
    await reopened.close()


@pytest.fixture
async def world(tmp_path: Path) -> AsyncIterator[tuple[DfsCluster, DfsClient, Path]]:
    # chunkserver-4 is alone on rack r3, so every chunk wants a replica on it; its disk is an 8 MiB tmpfs.
    racks = ("r1", "r2", "r1", "r3")
    cluster = DfsCluster(tmp_path, masters=1, chunkservers=4, chunk_size_bytes=1 * MiB, racks=racks)
    disk = cluster.data_dir("chunkserver-4")
    mount_tmpfs(disk, "8m")
    try:
        await asyncio.to_thread(cluster.start)
        client = await cluster.client(TEST_CLIENT_CONFIG)
        try:
            yield cluster, client, disk
        finally:
            await client.rpc.close()
            assert await asyncio.to_thread(cluster.stop) == []
    finally:
        await asyncio.to_thread(subprocess.run, ["umount", str(disk)], check=True)


def fill(disk: Path, name: str = "ballast") -> Path:
    """Another program takes every free byte of the disk."""
    ballast = disk / name
    with open(ballast, "wb") as f:
        try:
            while True:
                f.write(b"\1" * (64 * KiB))
                f.flush()
        except OSError:
            pass
    return ballast


async def test_a_write_survives_a_chunk_server_whose_disk_fills(world: tuple[DfsCluster, DfsClient, Path]) -> None:
    _, client, disk = world
    full = "chunkserver-4"
    data = os.urandom(5 * MiB + 77)
    writer = await client.create("/full/a")
    await writer.write(data[: 3 * MiB // 2])
    await writer.flush()
    assert full in writer.pipe.servers  # type: ignore[union-attr]
    ballast = await asyncio.to_thread(fill, disk)
    await writer.write(data[3 * MiB // 2 :])  # the pipeline through the full server fails; the writer recovers
    assert await writer.close() == len(data)
    assert await client.read("/full/a") == data
    assert full in writer.excluded
    address = next(s.address for s in await client.servers() if s.server_id == full)
    # The server dropped the partial replica of the failed pipeline, which may have freed room for the probe:
    # take that too, so the probe meets a full disk.
    more = await asyncio.to_thread(fill, disk, "ballast-2")
    probe = WriteChunk(ChunkGeometry(10**9, MiB, 64 * KiB, False), 1, 0, 0)
    with pytest.raises(UnavailableError, match="disk full") as refused:
        await client.rpc.call(address, probe, payload=os.urandom(64 * KiB), timeout=10)
    assert refused.value.fields["reason"] == "disk_full" and str(disk) in refused.value.message
    await client.wait_healthy(60)
    located: LocateReply = await client.master(Locate("/full/a", 0, len(data)))
    for grant in located.chunks:  # every replica of every chunk, the full server's included, verifies
        loc = grant.location
        assert len(grant.servers) == 3
        for server in grant.servers:
            reply = await client.rpc.call_full(
                server.address, ReadChunk(loc.chunk_id, loc.version, 0, loc.length, loc.length), timeout=10
            )
            assert bytes(reply.payload) == data[loc.file_offset : loc.file_offset + loc.length]
    more.unlink()
    ballast.unlink()  # space is back: the server takes new chunks again
    await client.write_file("/full/b", os.urandom(MiB // 2))
