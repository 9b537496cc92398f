"""What the benchmarks' client processes share: how the parent starts one, and how one reads its orders."""

from __future__ import annotations

import asyncio
import os
import sys
import threading
from collections.abc import Sequence

__all__ = ["spawn_worker", "stdin_lines"]


async def spawn_worker(module: str, argv: Sequence[str], log: str) -> asyncio.subprocess.Process:
    """``python -m module argv…`` with pipes for stdin and stdout, stderr appended to ``log``."""
    stderr = os.open(log, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
    try:
        return await asyncio.create_subprocess_exec(
            *(sys.executable, "-m", module, *argv),
            stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE,
            stderr=stderr,
        )
    finally:
        os.close(stderr)


def stdin_lines() -> asyncio.Queue[str]:
    """Lines of stdin ("" at its end), read by a daemon thread (it never keeps the process alive)."""
    loop = asyncio.get_running_loop()
    lines: asyncio.Queue[str] = asyncio.Queue()

    def read() -> None:
        while True:
            line = sys.stdin.readline()
            loop.call_soon_threadsafe(lines.put_nowait, line)
            if not line:
                return

    threading.Thread(target=read, name="stdin", daemon=True).start()
    return lines
