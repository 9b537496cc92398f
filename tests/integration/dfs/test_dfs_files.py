"""Files through the Python client against real processes: writes and reads, ranges, appends, random writes,
log files and tailing, the namespace, and clear errors for bad input."""

from __future__ import annotations

import asyncio
import os

import pytest

from feitian.dfs.client.client import DfsClient
from feitian.dfs.core import NodeKind
from feitian.dfs.messages.master import Locate, LocateReply
from feitian.errors import AlreadyExistsError, ConflictError, InvalidArgumentError, NotFoundError
from feitian.testing.waiting import wait_for_condition

KiB, MiB = 1 << 10, 1 << 20


async def test_write_read_ranges_and_placement(dfs: DfsClient) -> None:
    data = os.urandom(3 * MiB + 12345)
    assert await dfs.write_file("/files/a.bin", data) == len(data)
    status = await dfs.stat("/files/a.bin")
    assert (status.length, status.chunk_count, status.replication) == (len(data), 4, 3)
    assert status.lease_holder is None
    assert await dfs.read("/files/a.bin") == data
    for offset, length in [(0, 1), (MiB - 10, 20), (2 * MiB + 5, MiB), (len(data) - 7, 7), (len(data), 0)]:
        assert await dfs.read("/files/a.bin", offset, length) == data[offset : offset + length]
    reader = await dfs.open_read("/files/a.bin")
    buffer = bytearray(MiB)
    assert await reader.read_into(len(data) - 100, buffer) == 100
    assert bytes(buffer[:100]) == data[-100:]
    located: LocateReply = await dfs.master(Locate("/files/a.bin", 0, len(data)))
    for grant in located.chunks:  # 3 replicas of every chunk, on 3 racks
        assert len({s.server_id for s in grant.servers}) == 3
        assert len({s.rack for s in grant.servers}) == 3


async def test_append_reopen_and_empty_files(dfs: DfsClient) -> None:
    parts = [os.urandom(n) for n in (10, 700 * KiB, 1, 2 * MiB)]
    await dfs.write_file("/files/app", b"")
    assert (await dfs.stat("/files/app")).length == 0
    for i, part in enumerate(parts):
        assert await dfs.append("/files/app", part) == sum(len(p) for p in parts[: i + 1])
    assert await dfs.read("/files/app") == b"".join(parts)
    assert await dfs.append("/files/new-by-append", b"x") == 1  # created when missing


async def test_writer_flush_makes_bytes_durable_and_readable(dfs: DfsClient) -> None:
    async with await dfs.create("/files/flushed") as writer:
        await writer.write(b"a" * 300 * KiB)
        await writer.flush()
        await writer.write(b"b" * 10)
    assert await dfs.read("/files/flushed") == b"a" * 300 * KiB + b"b" * 10


async def test_random_writes_overwrite_and_extend(dfs: DfsClient) -> None:
    original = bytearray(os.urandom(2 * MiB + 100))
    await dfs.write_file("/files/rand", bytes(original))
    writer = await dfs.open_write("/files/rand", mode="random")
    patch = os.urandom(300 * KiB)
    offset = MiB - 1000  # spans the first chunk boundary
    await writer.pwrite(offset, patch)
    original[offset : offset + len(patch)] = patch
    tail = os.urandom(MiB)
    await writer.pwrite(len(original) - 50, tail)  # overwrites the end and extends past it
    original[len(original) - 50 :] = tail
    with pytest.raises(InvalidArgumentError, match=r"no holes|past the end"):
        await writer.pwrite(len(original) + 10, b"x")
    await writer.close()
    assert await dfs.read("/files/rand") == bytes(original)


async def test_one_writer_per_file(dfs: DfsClient, dfs_cluster: object) -> None:
    first = await dfs.create("/files/busy")
    await first.write(b"mine")
    other = await dfs_cluster.client()  # type: ignore[attr-defined]
    try:
        with pytest.raises(ConflictError) as refused:
            await other.open_write("/files/busy")
        assert refused.value.fields["reason"] == "open_for_writing" and "open for writing by" in refused.value.message
        with pytest.raises(ConflictError, match="open for writing"):
            await other.create("/files/busy", overwrite=True)
    finally:
        await other.rpc.close()
    await first.close()
    assert await dfs.read("/files/busy") == b"mine"


async def test_a_writer_that_gives_up_releases_its_lease_at_once(dfs: DfsClient, dfs_cluster: object) -> None:
    data = os.urandom(MiB + 1000)  # a sealed chunk and an open one
    writer = await dfs.create("/files/given-up")
    await writer.write(data)
    await writer.flush()
    await writer.abort()  # gives up: the master seals what the replicas agree on and closes the file now
    status = await dfs.stat("/files/given-up")
    assert status.lease_holder is None and status.length == len(data)  # not locked for a lease's 60 s
    other = await dfs_cluster.client()  # type: ignore[attr-defined]
    try:
        assert await other.append("/files/given-up", b"more") == len(data) + 4  # another writer, right away
        second = await other.create("/files/removed")
        await second.write(b"half an upload")
        await second.abort(remove=True)  # a failed upload takes back the file it was creating
        assert not await dfs.exists("/files/removed")
    finally:
        await other.rpc.close()
    assert await dfs.read("/files/given-up") == data + b"more"


async def test_concurrent_writers_of_different_files(dfs: DfsClient) -> None:
    blobs = {f"/files/par/{i}": os.urandom(600 * KiB + i) for i in range(6)}
    await asyncio.gather(*(dfs.write_file(path, data) for path, data in blobs.items()))
    for path, data in blobs.items():
        assert await dfs.read(path) == data


async def test_log_file_appends_are_visible_to_a_tailing_reader_before_close(dfs: DfsClient) -> None:
    writer = await dfs.create("/files/app.log", file_type="log")
    seen = bytearray()

    async def follow() -> None:
        async for piece in dfs.tail("/files/app.log", poll_s=0.02):
            seen.extend(piece)

    tailer = asyncio.ensure_future(follow())
    records = [b"record %04d\n" % i for i in range(50)]
    for record in records:
        await writer.write(record)
    expected = b"".join(records)
    await wait_for_condition(lambda: bytes(seen) == expected, 10, "the tailing reader saw every record")
    assert bytes(seen) == expected  # acknowledged appends, read while the file is still open
    assert (await dfs.stat("/files/app.log")).lease_holder is not None
    tailer.cancel()
    await writer.close()
    assert await dfs.read("/files/app.log") == expected
    with pytest.raises(InvalidArgumentError, match="random"):
        await dfs.open_write("/files/app.log", mode="random")


async def test_namespace_operations(dfs: DfsClient) -> None:
    await dfs.mkdir("/ns/a/b/c")
    await dfs.mkdir("/ns/a/b/c")  # with parents: an existing directory is fine
    await dfs.write_file("/ns/a/b/c/f", b"hello")
    assert await dfs.exists("/ns/a/b/c/f") and not await dfs.exists("/ns/a/nope")
    assert [(e.name, e.kind) for e in await dfs.list("/ns/a/b")] == [("c", NodeKind.DIR)]
    await dfs.rename("/ns/a/b/c/f", "/ns/a/g")
    assert not await dfs.exists("/ns/a/b/c/f") and await dfs.read("/ns/a/g") == b"hello"
    await dfs.rename("/ns/a/b", "/ns/moved")  # a whole directory, atomically
    assert await dfs.exists("/ns/moved/c") and not await dfs.exists("/ns/a/b")
    with pytest.raises(ConflictError, match="not empty"):
        await dfs.delete("/ns/a")
    result = await dfs.delete("/ns", recursive=True)
    assert result.files == 1 and not await dfs.exists("/ns")
    names = [f"n{i:04d}" for i in range(1200)]  # more than one page of a listing
    await asyncio.gather(*(dfs.write_file(f"/many/{n}", b"") for n in names))
    assert [e.name for e in await dfs.list("/many")] == names


@pytest.mark.parametrize(
    ("action", "error", "words"),
    [
        (lambda d: d.stat("relative/path"), InvalidArgumentError, "not absolute"),
        (lambda d: d.read("/errs/f", 0, 100), InvalidArgumentError, "past the end"),
        (lambda d: d.read("/errs/f", 11, -1), InvalidArgumentError, "past the end"),
        (lambda d: d.write_file("/errs", b"x"), ConflictError, "is a directory"),
        (lambda d: d.create("/errs/f"), AlreadyExistsError, "already exists"),
        (lambda d: d.read("/errs/missing"), NotFoundError, "no such file"),
        (lambda d: d.mkdir("/errs/f/sub"), ConflictError, "is a file, not a directory"),
        (lambda d: d.rename("/errs", "/errs/inside"), InvalidArgumentError, "inside itself"),
        (lambda d: d.list("/errs/f"), ConflictError, "not a directory"),
        (lambda d: d.create("/errs/g", replication=17), InvalidArgumentError, "replication"),
        (lambda d: d.create("/errs/../x"), InvalidArgumentError, "'..'"),
    ],
)
async def test_bad_input_gets_a_clear_error(dfs: DfsClient, action: object, error: type, words: str) -> None:
    if not await dfs.exists("/errs/f"):
        await dfs.write_file("/errs/f", b"0123456789")
    with pytest.raises(error) as caught:
        await action(dfs)  # type: ignore[operator]
    assert words in str(caught.value), caught.value
    assert await dfs.read("/errs/f") == b"0123456789"  # nothing stored was touched


async def test_a_whole_file_read_is_of_one_file_while_it_is_replaced(dfs: DfsClient) -> None:
    """A reader of a file that a writer keeps replacing (written beside it, renamed over it) gets one version
    whole, never the length of one and the bytes of another."""
    stop = asyncio.Event()
    versions = 0

    async def writer() -> None:
        nonlocal versions
        while not stop.is_set():
            versions += 1
            body = (f"{versions}:" + "x" * (100 + 37 * (versions % 50))).encode()
            await dfs.write_file("/replaced.new", body + b"$", replication=1)
            await dfs.rename("/replaced.new", "/replaced", overwrite=True)

    await dfs.write_file("/replaced", b"0:$", replication=1)
    task = asyncio.get_running_loop().create_task(writer())
    try:
        for _ in range(300):
            data = await dfs.read("/replaced")
            number, _, rest = data.partition(b":")
            assert rest.endswith(b"$") and len(rest) in (1, 100 + 37 * (int(number) % 50) + 1), data[:40]
    finally:
        stop.set()
        await task
    assert versions > 10  # the reads really met replacements
