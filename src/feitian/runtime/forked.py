"""Run a blocking function in a forked copy of this process, without stopping the event loop.

Used to take snapshots of large in-memory state (Redis's BGSAVE): the child sees the state exactly as it was at
the fork, copy-on-write, encodes and writes it while the parent goes on serving. The fork itself copies page
tables only (milliseconds per GiB); pages the child touches (reference counts) are copied lazily.

The child: stops collecting cycles (``gc.disable``: a collection would touch every object's pages), lowers its
priority (``os.nice(10)``: on a busy machine the parent, serving requests, gets the CPU first), takes back
the default SIGINT/SIGTERM handlers and lets go of the parent's signal wake-up descriptor (so a signal meant for
it never reaches the parent's event loop), asks the kernel to SIGKILL it if the parent dies (Linux: it must not
outlive the parent and hold the parent's files), runs ``fn``, and leaves with ``os._exit`` (no atexit
handlers, no buffered output of the parent's flushed twice). A failure's text comes back through a pipe. The
parent waits on a worker thread; if the waiting task is cancelled, the child is SIGKILLed. Meanwhile the
parent's garbage collector leaves alone the objects that existed at the fork (``gc.freeze``, undone when the
child is gone): a collection writes into every tracked object's header, which would copy every page shared with
the child.

Only ``fn``'s own code runs in the child: no event loop, no threads. It must not take locks another thread of
the parent may have held at the fork (``logging`` re-creates its own locks after a fork).
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import gc
import os
import signal
import sys
import warnings
from collections.abc import Callable

from feitian.errors import UnavailableError

MAX_ERROR_BYTES = 4096
CHILD_NICENESS = 10  # the child runs at a lower priority than the parent
_PR_SET_PDEATHSIG = 1


_children = 0  # children alive: the collector is frozen while any is (the process's GC is global state too)


def _freeze() -> None:
    global _children
    _children += 1
    gc.freeze()


def _unfreeze() -> None:
    global _children
    _children -= 1
    if _children == 0:
        gc.unfreeze()


def can_fork() -> bool:
    return hasattr(os, "fork")


def _in_child(fn: Callable[[], None], write_fd: int, parent: int) -> None:
    code = 0
    try:
        gc.disable()
        with contextlib.suppress(OSError):
            os.nice(CHILD_NICENESS)  # the parent, serving, comes first on a busy machine
        with contextlib.suppress(ValueError, OSError):
            signal.set_wakeup_fd(-1)
        for signum in (signal.SIGINT, signal.SIGTERM):
            signal.signal(signum, signal.SIG_DFL)
        if sys.platform == "linux":
            with contextlib.suppress(OSError, AttributeError):
                ctypes.CDLL(None, use_errno=True).prctl(_PR_SET_PDEATHSIG, signal.SIGKILL)
            if os.getppid() != parent:  # the parent died before the request took effect
                os._exit(1)
        fn()
    except BaseException as exc:
        code = 1
        with contextlib.suppress(BaseException):
            os.write(write_fd, f"{type(exc).__name__}: {exc}".encode(errors="replace")[:MAX_ERROR_BYTES])
    finally:
        os._exit(code)


async def run_in_child(fn: Callable[[], None], what: str) -> None:
    """Run ``fn`` in a forked child and wait for it; UnavailableError (naming ``what``) if it fails."""
    read_fd, write_fd = os.pipe()
    parent = os.getpid()
    # While the child lives, the parent's collections must not traverse the objects it shares with the child:
    # writing their GC headers copies every page they sit on (hundreds of milliseconds for a large state).
    _freeze()
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", DeprecationWarning)  # 3.12+: fork with threads (see the docstring)
            pid = os.fork()
    except BaseException:
        _unfreeze()
        raise
    if pid == 0:
        os.close(read_fd)
        _in_child(fn, write_fd, parent)
    os.close(write_fd)

    def wait() -> tuple[int, bytes]:
        chunks = []
        try:
            while chunk := os.read(read_fd, MAX_ERROR_BYTES):
                chunks.append(chunk)
        finally:
            os.close(read_fd)
        _, status = os.waitpid(pid, 0)
        return os.waitstatus_to_exitcode(status), b"".join(chunks)

    waiting = asyncio.get_running_loop().run_in_executor(None, wait)
    try:
        code, error = await asyncio.shield(waiting)
    except asyncio.CancelledError:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
        with contextlib.suppress(Exception):
            await waiting
        raise
    finally:
        _unfreeze()
    if code != 0:
        detail = error.decode(errors="replace") or f"exit code {code}"
        raise UnavailableError(f"{what}: the child process failed: {detail}")
