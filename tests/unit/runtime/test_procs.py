"""Process lifecycle (runtime/procs.py): a process counts as gone only once every thread of it has exited."""

from __future__ import annotations

import subprocess
import sys
import time

from feitian.runtime.procs import ProcessRef, is_running, start_time_of, wait_gone
from feitian.testing.waiting import wait_until

# The main thread leaves with the exit system call (not exit_group), so the process lives on in its other thread,
# which holds the process's files (and the locks on them) for another 1.5 s.
_MAIN_THREAD_EXITS_FIRST = """
import ctypes, platform, threading, time
threading.Thread(target=time.sleep, args=(1.5,)).start()
print("ready", flush=True)
ctypes.CDLL(None).syscall({"x86_64": 60, "aarch64": 93}[platform.machine()], 0)  # SYS_exit
"""


def test_a_process_whose_main_thread_exited_is_not_gone_until_its_last_thread_is() -> None:
    proc = subprocess.Popen([sys.executable, "-c", _MAIN_THREAD_EXITS_FIRST], stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout is not None and proc.stdout.readline().strip() == "ready"
        ref = ProcessRef(proc.pid, start_time_of(proc.pid))
        wait_until(lambda: not is_running(ref), 5, "the main thread exits (a zombie leader)")
        started = time.monotonic()
        assert wait_gone([ref], 0.2) == [ref]  # its other thread still runs
        assert wait_gone([ref], 10) == []
        assert time.monotonic() - started >= 0.5
    finally:
        proc.kill()
        proc.wait()
