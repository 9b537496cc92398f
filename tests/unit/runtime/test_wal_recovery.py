"""WAL on real files: round trips, segments, torn tails, corruption, release, I/O failures."""

from __future__ import annotations

import errno
import os
from pathlib import Path

import pytest
from wal_test_support import crash_image, cut, segments

from feitian.errors import (
    ConflictError,
    DataCorruptionError,
    InvalidArgumentError,
    MessageTooLargeError,
    UnavailableError,
)
from feitian.runtime.wal import WAL, Preallocate
from feitian.runtime.wal_format import RECORD_HEADER_SIZE, SEGMENT_HEADER_SIZE, Record, record_size


def rec(i: int, size: int = 20) -> Record:
    return Record(1 + i % 3, (b"%06d|" % i) * (size // 7 + 1))


def data_of(recovered: list) -> list[Record]:  # type: ignore[type-arg]
    return [Record(r.kind, r.data) for r in recovered]


def write_synced(directory: Path, records: list[Record], **options: object) -> None:
    wal, _ = WAL.open(directory, **options)  # type: ignore[arg-type]
    for r in records:
        wal.append([r])
        wal.sync()
    wal.close()


@pytest.mark.parametrize("preallocate", list(Preallocate))
def test_round_trip(tmp_path: Path, preallocate: Preallocate) -> None:
    records = [rec(i, size=i * 13 % 300) for i in range(100)] + [Record(0, b""), Record(65535, b"z" * 70000)]
    wal, recovered = WAL.open(tmp_path, preallocate=preallocate, segment_size_bytes=1 << 20)
    assert recovered == []
    for i in range(0, len(records), 10):
        seq = wal.append(records[i : i + 10])
        assert wal.sync() == seq == wal.durable_seq
    wal.close()
    wal, recovered = WAL.open(tmp_path, preallocate=preallocate, segment_size_bytes=1 << 20)
    assert data_of(recovered) == records
    assert wal.recovery.truncated == ()
    wal.append([Record(5, b"after reopen")])
    wal.close()  # close syncs
    _, recovered = WAL.open(tmp_path)
    assert data_of(recovered)[-1] == Record(5, b"after reopen")


def test_unsynced_appends_are_not_on_disk(tmp_path: Path) -> None:
    wal, _ = WAL.open(tmp_path / "wal")
    wal.append([rec(1)])
    wal.sync()
    wal.append([rec(2)])
    image = crash_image(tmp_path / "wal", tmp_path / "crash")
    wal.close()
    image_wal, recovered = WAL.open(image)
    assert data_of(recovered) == [rec(1)]
    image_wal.close()


@pytest.mark.parametrize("preallocate", list(Preallocate))
def test_many_segments(tmp_path: Path, preallocate: Preallocate) -> None:
    records = [rec(i, size=100) for i in range(300)]
    write_synced(tmp_path, records, segment_size_bytes=4096, preallocate=preallocate)
    files = segments(tmp_path)
    assert len(files) >= 300 * record_size(100) // 4096
    assert files[0].name == "0000000000000001-0000000000000001.wal"
    assert all(f.stat().st_size <= 4096 + record_size(100) for f in files[:-1])  # trimmed at the cut
    wal, recovered = WAL.open(tmp_path, segment_size_bytes=4096, preallocate=preallocate)
    assert data_of(recovered) == records
    first = {int(f.name[17:33], 16) for f in files}
    assert first == {1 + recovered.index(r) for r in recovered if r.offset == SEGMENT_HEADER_SIZE}
    wal.close()


@pytest.mark.parametrize("tail", [b"", b"zeros", b"garbage"])
def test_torn_tail_at_every_byte_of_the_last_record(tmp_path: Path, tail: bytes) -> None:
    records = [rec(i, size=37) for i in range(5)]
    write_synced(tmp_path / "wal", records, segment_size_bytes=4096, preallocate=Preallocate.NONE)
    last_segment = segments(tmp_path / "wal")[-1]
    size = last_segment.stat().st_size
    start = size - record_size(len(records[-1].data))
    for at in range(start, size):
        image = crash_image(tmp_path / "wal", tmp_path / f"crash-{at}")
        garbage = {b"": b"", b"zeros": bytes(8192), b"garbage": b"\x5a" * (size - at + 3)}[tail]
        cut(segments(image)[-1], at, garbage)
        wal, recovered = WAL.open(image)
        if at >= start + RECORD_HEADER_SIZE + len(records[-1].data) and tail == b"zeros":
            # Only padding was cut, and the preallocated zeros supply it: the record is whole.
            assert data_of(recovered) == records, at
            wal.close()
            continue
        assert data_of(recovered) == records[:-1], at
        clean = at == start and tail != b"garbage"
        assert (wal.recovery.truncated == ()) == clean
        if not clean:
            assert wal.recovery.truncated[0][1] == start
        # The log goes on from the cut, and nothing of the torn record resurfaces later.
        wal.append([Record(7, b"next")])
        wal.sync()
        wal.close()
        wal, recovered = WAL.open(image)
        assert data_of(recovered) == [*records[:-1], Record(7, b"next")], at
        assert wal.recovery.truncated == ()
        wal.close()


def test_flipped_byte_in_a_middle_record_refuses_to_start(tmp_path: Path) -> None:
    records = [rec(i, size=30) for i in range(5)]
    write_synced(tmp_path / "wal", records, preallocate=Preallocate.NONE)
    path = segments(tmp_path / "wal")[-1]
    offset = SEGMENT_HEADER_SIZE + 2 * record_size(len(records[0].data))
    for i in range(offset, offset + record_size(len(records[2].data))):
        image = crash_image(tmp_path / "wal", tmp_path / f"flip-{i}")
        victim = segments(image)[-1]
        raw = bytearray(victim.read_bytes())
        raw[i] ^= 0x10
        victim.write_bytes(bytes(raw))
        with pytest.raises(DataCorruptionError) as caught:
            WAL.open(image)
        assert caught.value.fields["path"] == str(victim)
        assert caught.value.fields["offset"] == offset
        assert str(victim) in caught.value.message and f"offset {offset}" in caught.value.message
    assert path.exists()


def test_damage_in_a_segment_that_is_not_the_last_refuses_to_start(tmp_path: Path) -> None:
    write_synced(tmp_path, [rec(i, size=200) for i in range(60)], segment_size_bytes=4096)
    first = segments(tmp_path)[0]
    cut(first, first.stat().st_size - 5)  # even a torn tail is corruption there
    with pytest.raises(DataCorruptionError, match="not the last") as caught:
        WAL.open(tmp_path)
    assert caught.value.fields["path"] == str(first)


def test_bad_segment_header_and_missing_segment_refuse_to_start(tmp_path: Path) -> None:
    write_synced(tmp_path / "a", [rec(i, size=200) for i in range(60)], segment_size_bytes=4096)
    image = crash_image(tmp_path / "a", tmp_path / "b")
    victim = segments(image)[-1]
    raw = bytearray(victim.read_bytes())
    raw[20] ^= 1
    victim.write_bytes(bytes(raw))
    with pytest.raises(DataCorruptionError, match="offset 0"):
        WAL.open(image)
    image = crash_image(tmp_path / "a", tmp_path / "c")
    segments(image)[1].unlink()
    with pytest.raises(DataCorruptionError, match="missing"):
        WAL.open(image)


def test_stale_temp_segment_of_an_interrupted_cut_is_removed(tmp_path: Path) -> None:
    write_synced(tmp_path, [rec(1)])
    stale = tmp_path / "0000000000000002-0000000000000002.wal.tmp"
    stale.write_bytes(b"half a segment")
    wal, recovered = WAL.open(tmp_path)
    assert data_of(recovered) == [rec(1)] and not stale.exists()
    wal.close()


def test_release_before_deletes_covered_segments_only(tmp_path: Path) -> None:
    records = [rec(i, size=200) for i in range(100)]
    write_synced(tmp_path, records, segment_size_bytes=4096)
    wal, _ = WAL.open(tmp_path, segment_size_bytes=4096)
    labels = [int(p.name[17:33], 16) for p in wal.segment_paths()]
    assert wal.release_before(labels[0]) == 0
    assert wal.release_before(labels[3]) == 3  # segments 0..2 hold only records below labels[3]
    assert [int(p.name[17:33], 16) for p in wal.segment_paths()] == labels[3:]
    assert wal.release_before(10**9) == len(labels) - 4  # never the active segment
    wal.close()
    _, recovered = WAL.open(tmp_path)
    assert data_of(recovered) == records[labels[-1] - 1 :]


def test_limits_and_exclusive_open(tmp_path: Path) -> None:
    wal, _ = WAL.open(tmp_path, max_record_bytes=100)
    with pytest.raises(MessageTooLargeError):
        wal.append([Record(1, b"x" * 101)])
    with pytest.raises(InvalidArgumentError):
        wal.append([Record(70000, b"")])
    with pytest.raises(ConflictError):
        WAL.open(tmp_path)
    with pytest.raises(InvalidArgumentError):
        WAL.open(tmp_path / "other", segment_size_bytes=100)
    wal.close()
    WAL.open(tmp_path)[0].close()


def test_enospc_mid_write_rolls_back_and_the_log_goes_on(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    wal, _ = WAL.open(tmp_path, preallocate=Preallocate.NONE)
    wal.append([rec(1)])
    wal.sync()
    real_pwrite = os.pwrite

    def half_then_full(fd: int, data: bytes, offset: int) -> int:
        if len(data) > 16:
            real_pwrite(fd, bytes(data)[:16], offset)  # a partial write lands, then the disk is full
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(os, "pwrite", half_then_full)
    seq = wal.append([rec(2), rec(3)])
    with pytest.raises(UnavailableError) as caught:
        wal.sync()
    assert caught.value.fields["reason"] == "disk_full" and "disk full" in str(caught.value)
    assert wal.durable_seq < seq <= wal.failed_seq and wal.usable
    monkeypatch.setattr(os, "pwrite", real_pwrite)
    wal.append([rec(4)])
    wal.sync()
    wal.close()
    _, recovered = WAL.open(tmp_path)
    assert data_of(recovered) == [rec(1), rec(4)]


def test_eio_from_fdatasync_breaks_the_wal_until_reopened(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    wal, _ = WAL.open(tmp_path)
    wal.append([rec(1)])
    wal.sync()

    def eio(fd: int) -> None:
        raise OSError(errno.EIO, "Input/output error")

    monkeypatch.setattr(os, "fdatasync", eio)
    wal.append([rec(2)])
    with pytest.raises(UnavailableError, match="I/O error") as caught:
        wal.sync()
    assert caught.value.fields["reason"] == "io_error" and not wal.usable
    monkeypatch.undo()
    with pytest.raises(UnavailableError, match="unusable"):
        wal.append([rec(3)])
    wal.close()
    wal, recovered = WAL.open(tmp_path)
    assert data_of(recovered)[0] == rec(1)
    wal.close()
