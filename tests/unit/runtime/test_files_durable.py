"""The fsync discipline helpers and the OS error translation."""

from __future__ import annotations

import errno
import os
from pathlib import Path

import pytest

from feitian.errors import (
    AlreadyExistsError,
    ConflictError,
    DataCorruptionError,
    NotFoundError,
    PermissionDeniedError,
    UnavailableError,
)
from feitian.runtime.files import DirLock, atomic_write, ensure_dir, is_disk_full, os_error, remove_durably


def test_atomic_write_replaces_and_leaves_no_temp_file(tmp_path: Path) -> None:
    target = tmp_path / "state"
    atomic_write(target, b"one")
    atomic_write(target, b"two")
    assert target.read_bytes() == b"two"
    assert [p.name for p in tmp_path.iterdir()] == ["state"]


def test_atomic_write_failure_removes_the_temp_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    def full(fd: int) -> None:
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(os, "fsync", full)
    with pytest.raises(UnavailableError, match="disk full") as caught:
        atomic_write(tmp_path / "state", b"data")
    assert is_disk_full(caught.value) and caught.value.fields["errno"] == "ENOSPC"
    assert list(tmp_path.iterdir()) == []


def test_ensure_dir_and_remove_durably(tmp_path: Path) -> None:
    deep = ensure_dir(tmp_path / "a" / "b" / "c")
    assert deep.is_dir()
    (deep / "x").write_bytes(b"1")
    remove_durably([deep / "x", deep / "missing"])
    assert list(deep.iterdir()) == []


@pytest.mark.parametrize(
    ("code", "op", "expected", "reason"),
    [
        (errno.ENOSPC, "write", UnavailableError, "disk_full"),
        (errno.EDQUOT, "write", UnavailableError, "disk_full"),
        (errno.EIO, "read", DataCorruptionError, "io_error"),
        (errno.EIO, "fsync", UnavailableError, "io_error"),
        (errno.EROFS, "write", UnavailableError, "read_only"),
        (errno.EACCES, "open", PermissionDeniedError, None),
        (errno.ENOENT, "open", NotFoundError, None),
        (errno.EEXIST, "create", AlreadyExistsError, None),
        (errno.EMFILE, "open", UnavailableError, "os_error"),
    ],
)
def test_os_errors_are_translated_once(code: int, op: str, expected: type, reason: str | None) -> None:
    error = os_error(OSError(code, os.strerror(code)), op, "/data/wal/x.wal")
    assert type(error) is expected
    assert error.fields["path"] == "/data/wal/x.wal" and error.fields["op"] == op
    assert error.message.startswith(f"{op} /data/wal/x.wal: ")
    assert error.fields.get("reason") == reason
    assert is_disk_full(error) == (reason == "disk_full")


def test_dir_lock_is_exclusive_until_released(tmp_path: Path) -> None:
    lock = DirLock(tmp_path)
    with pytest.raises(ConflictError, match="already open"):
        DirLock(tmp_path)
    lock.release()
    DirLock(tmp_path).release()
