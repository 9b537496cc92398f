"""Test helpers for the ``feitian`` command: run it as a real subprocess."""

from __future__ import annotations

import subprocess
import sys

FEITIAN = [sys.executable, "-m", "feitian"]


def feitian(*args: str, check: bool = False, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    """Run ``feitian ARGS`` with the current interpreter; with ``check``, fail loudly on a non-zero exit."""
    proc = subprocess.run([*FEITIAN, *args], capture_output=True, text=True, timeout=timeout, check=False)
    if check and proc.returncode != 0:
        raise AssertionError(f"feitian {' '.join(args)} exited {proc.returncode}:\n{proc.stdout}\n{proc.stderr}")
    return proc
