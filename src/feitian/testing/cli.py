"""Test helpers for the ``feitian`` command: run it as a real subprocess."""

from __future__ import annotations

import json
import subprocess
import sys
from typing import Any

FEITIAN = [sys.executable, "-m", "feitian"]


def feitian(*args: str, check: bool = False, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    """Run ``feitian ARGS`` with the current interpreter; with ``check``, fail loudly on a non-zero exit."""
    proc = subprocess.run([*FEITIAN, *args], capture_output=True, text=True, timeout=timeout, check=False)
    if check and proc.returncode != 0:
        raise AssertionError(f"feitian {' '.join(args)} exited {proc.returncode}:\n{proc.stdout}\n{proc.stderr}")
    return proc


def lock_holder(cluster_dir: str, path: str, *args: str) -> tuple[subprocess.Popen[str], dict[str, Any]]:
    """``feitian coord lock PATH ARGS --json`` in a process of its own, once it holds the lock: the process
    (stderr piped) and what it printed (``token``, ``node``, ``session``). The caller stops it."""
    proc = subprocess.Popen(
        [*FEITIAN, "coord", "lock", path, *args, "--json", "--cluster", cluster_dir],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    assert proc.stdout is not None
    text = ""
    while not text.rstrip().endswith("}"):  # the JSON document is printed indented, over several lines
        line = proc.stdout.readline()
        if not line:
            proc.kill()
            raise AssertionError(f"the lock holder exited before holding {path}")
        text += line
    info: dict[str, Any] = json.loads(text)
    return proc, info
