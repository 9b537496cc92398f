"""Small real disks for fault tests: a tmpfs of a given size mounted on a directory (we run as root).

``with small_disk(path, "8m"):`` mounts, yields, and always unmounts. Where mounting is not permitted it raises
:class:`DiskUnavailable` with the reason, which a test turns into a skip.
"""

from __future__ import annotations

import os
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager


class DiskUnavailable(Exception):
    pass


@contextmanager
def small_disk(path: str | os.PathLike[str], size: str) -> Iterator[str]:
    os.makedirs(path, exist_ok=True)
    done = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", os.fspath(path)],
        capture_output=True,
        text=True,
        check=False,
    )
    if done.returncode != 0:
        raise DiskUnavailable(f"cannot mount a tmpfs here: {done.stderr.strip() or done.returncode}")
    try:
        yield os.fspath(path)
    finally:
        subprocess.run(["umount", "-l", os.fspath(path)], check=False)


def fill(path: str | os.PathLike[str], name: str = "ballast") -> str:
    """Take every free byte of the file system holding ``path``; returns the ballast file to delete later."""
    target = os.path.join(path, name)
    fd = os.open(target, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
    try:
        for size in (1 << 20, 4096, 1):
            block = b"\x01" * size
            while True:
                try:
                    os.write(fd, block)
                except OSError:
                    break
    finally:
        os.close(fd)
    return target
