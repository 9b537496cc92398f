"""Crash images for WAL and Raft store tests: copy what is in the files now, then cut the last segment."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

from feitian.runtime.wal_format import parse_segment_name


def segments(directory: Path) -> list[Path]:
    return sorted(p for p in directory.iterdir() if parse_segment_name(p.name) is not None)


def crash_image(src: Path, dst: Path) -> Path:
    """A copy of ``src`` as a crash would leave it if every write so far had reached the disk."""
    shutil.copytree(src, dst)
    return dst


def cut(path: Path, at: int, tail: bytes = b"") -> None:
    """Truncate ``path`` at ``at`` and append ``tail`` (zeros of preallocation, garbage of a torn sector)."""
    with open(path, "r+b") as f:
        f.truncate(at)
        f.seek(at)
        f.write(tail)
        f.flush()
        os.fsync(f.fileno())
