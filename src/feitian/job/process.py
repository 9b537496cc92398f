"""The entry point shared by a job's programs (``python -m feitian.job.master|worker``): logging to stderr (Tubo
keeps it: ``feitian sched logs``), the arguments checked, the event loop run, a FeitianError one ``error:`` line."""

from __future__ import annotations

import logging
import sys
from collections.abc import Callable, Coroutine
from typing import Any

from feitian.errors import FeitianError
from feitian.runtime.eventloop import run

__all__ = ["run_program"]


def run_program(main: Callable[[list[str]], Coroutine[Any, Any, int]], usage: str, nargs: int) -> None:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    argv = sys.argv[1:]
    if len(argv) != nargs:
        print(f"usage: {usage}", file=sys.stderr)
        sys.exit(2)
    try:
        code = run(main(argv))
    except FeitianError as exc:
        print(f"error: {exc.message}", file=sys.stderr)
        code = 1
    sys.exit(code)
