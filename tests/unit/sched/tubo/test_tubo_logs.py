"""The log keeper's bounds on files in a temp dir: a stream keeps its tail with offsets that stay valid across
rotations; retention drops the oldest logs beyond the count, byte and age bounds; a symlink or hard link planted
in a work dir reads as empty; another application's log is not found."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from feitian.errors import InvalidArgumentError, NotFoundError
from feitian.sched.tubo.logs import LogKeeper, LogLimits, LogStream
from feitian.sched.tubo.trash import Trash

S = 1_000_000_000


def keeper(tmp_path: Path, **limits: int | float) -> LogKeeper:
    (tmp_path / "trash").mkdir(exist_ok=True)
    found = LogKeeper(tmp_path, LogLimits(**limits), Trash(tmp_path / "trash"))  # type: ignore[arg-type]
    found.load(set(), 0)
    return found


def work(tmp_path: Path, proc_id: str, stdout: bytes = b"", stderr: bytes = b"") -> Path:
    path = tmp_path / "work" / proc_id
    path.mkdir(parents=True)
    (path / "stdout.log").write_bytes(stdout)
    (path / "stderr.log").write_bytes(stderr)
    return path


def read_all(logs: LogKeeper, proc_id: str, work_dir: Path | None, offset: int | None = 0) -> tuple[bytes, int, int]:
    got = logs.read(proc_id, "app", LogStream.STDOUT, work_dir=work_dir, running=True, offset=offset, length=1 << 20)
    return got.data, got.first, got.end


def test_a_stream_keeps_its_tail_and_offsets_stay_valid(tmp_path: Path) -> None:
    logs = keeper(tmp_path, max_stream_bytes=8192)
    data = bytes(i % 251 for i in range(20_000))
    work_dir = work(tmp_path, "p1")
    logs.starting("p1", "app")
    written = 0
    for piece in range(0, len(data), 3000):  # written in pieces, rotated after each as poll would
        with open(work_dir / "stdout.log", "ab") as f:
            f.write(data[piece : piece + 3000])
        written = min(len(data), piece + 3000)
        logs.rotate("p1", "app", work_dir)
        got, first, end = read_all(logs, "p1", work_dir)
        assert end == written
        assert end - first <= 8192  # the bound, at each check
        assert got == data[first:end]  # the logical offsets name the same bytes after any rotation
    assert first > 0  # something was dropped
    # A read from an offset inside what is kept, and one before it (starts at the first byte kept).
    part = logs.read("p1", "app", LogStream.STDOUT, work_dir=work_dir, running=True, offset=first + 10, length=5)
    assert (part.offset, part.data) == (first + 10, data[first + 10 : first + 15])
    early = logs.read("p1", "app", LogStream.STDOUT, work_dir=work_dir, running=True, offset=0, length=5)
    assert (early.offset, early.data) == (first, data[first : first + 5])
    tail = logs.read("p1", "app", LogStream.STDOUT, work_dir=work_dir, running=True, offset=None, length=7)
    assert tail.data == data[-7:]
    # Forgotten: the log leaves the work dir and reads the same.
    logs.keep("p1", "app", work_dir, 5 * S, 5 * S)
    assert not (work_dir / "stdout.log").exists()
    assert read_all(logs, "p1", None) == (data[first:], first, len(data))
    # A restarted keeper finds it again, with its offsets.
    again = keeper(tmp_path, max_stream_bytes=8192)
    assert read_all(again, "p1", None) == (data[first:], first, len(data))


def test_retention_drops_the_oldest_by_count_bytes_and_age(tmp_path: Path) -> None:
    logs = keeper(tmp_path, retain_count=3, retain_bytes=1000, retain_age_s=100.0)
    for i in range(4):
        logs.keep(f"p{i}", "app", work(tmp_path, f"p{i}", b"x" * 100), (10 + i) * S, (10 + i) * S)
    assert list(logs.retained) == ["p1", "p2", "p3"]  # count: the oldest went first
    with pytest.raises(NotFoundError, match="p0"):
        read_all(logs, "p0", None)
    logs.keep("big", "app", work(tmp_path, "big", b"y" * 700), 20 * S, 20 * S)
    assert list(logs.retained) == ["p3", "big"]  # bytes (a meta file each included): p1 and p2 went
    assert logs.retire(109 * S) == []
    assert logs.retire(114 * S) == ["p3"]  # age: ended at 13 s, 100 s ago and more
    assert list(logs.retained) == ["big"]
    assert not (tmp_path / "logs" / "p3").exists()  # in the trash


def test_a_new_run_under_the_same_id_replaces_the_old_log(tmp_path: Path) -> None:
    logs = keeper(tmp_path)
    logs.keep("w", "app", work(tmp_path, "w", b"first run\n"), S, S)
    logs.starting("w", "app")
    work_dir = tmp_path / "work2"
    work_dir.mkdir()
    (work_dir / "stdout.log").write_bytes(b"second\n")
    assert read_all(logs, "w", work_dir)[0] == b"second\n"
    assert "w" not in logs.retained


def test_a_symlink_in_the_work_dir_reads_as_empty_and_another_app_is_refused(tmp_path: Path) -> None:
    logs = keeper(tmp_path)
    secret = tmp_path / "secret"
    secret.write_bytes(b"not yours")
    work_dir = work(tmp_path, "p")
    os.unlink(work_dir / "stdout.log")
    os.symlink(secret, work_dir / "stdout.log")
    assert read_all(logs, "p", work_dir)[0] == b""
    os.link(secret, work_dir / "stderr.log.tmp")
    os.replace(work_dir / "stderr.log.tmp", work_dir / "stderr.log")  # a hard link: not read, never truncated
    logs.rotate("p", "app", work_dir)
    got = logs.read("p", "app", LogStream.STDERR, work_dir=work_dir, running=True, offset=0, length=100)
    assert got.data == b"" and secret.read_bytes() == b"not yours"
    logs.keep("p", "app", work_dir, S, S)
    assert read_all(logs, "p", None)[0] == b""
    with pytest.raises(NotFoundError):
        logs.read("p", "other-app", LogStream.STDOUT, work_dir=None, running=False, offset=0, length=10)


def test_bad_limits_are_refused() -> None:
    with pytest.raises(InvalidArgumentError, match="max_stream_bytes"):
        LogLimits(max_stream_bytes=10).validate()
    with pytest.raises(InvalidArgumentError, match="retain"):
        LogLimits(retain_count=-1).validate()


def test_a_rotation_or_keep_that_fails_is_logged_not_raised(tmp_path: Path) -> None:
    logs = keeper(tmp_path, max_stream_bytes=4096)
    work_dir = work(tmp_path, "p", b"z" * 5000)
    (tmp_path / "logs" / "p").write_bytes(b"")  # a file where its log dir should go: every write there fails
    logs.rotate("p", "app", work_dir)  # no error: the stream stays as it is, tried again at the next check
    assert (work_dir / "stdout.log").stat().st_size == 5000
    logs.keep("p", "app", work_dir, S, S)  # no error: not kept
    assert "p" not in logs.retained
