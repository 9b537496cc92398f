"""An application master that tries what it must not be allowed, and records each error it gets (as
``<class> <message>`` lines in OUT): a worker on a grant that is not its own, demand for an unknown resource,
a negative amount, an absurd count."""

from __future__ import annotations

import asyncio
import os
import sys

from feitian.errors import FeitianError
from feitian.sched.client import AppMaster
from feitian.sched.core import Grant, Shape


async def main() -> list[str]:
    lines = []
    async with AppMaster.from_env() as am:
        here = os.environ["FEITIAN_MACHINE"]
        forged = Grant(
            grant_id=123456789, app=am.app_id, unit="x", machine=here, shape=Shape.of(cpu=500), priority=100, group="x"
        )
        for label, make in [
            ("forged-grant", lambda: am.start_worker(forged, "w", ["true"])),
            ("unknown-resource", lambda: am.ask("a", 1, Shape.of(gpu=1))),
            ("negative-amount", lambda: am.ask("b", 1, Shape.of(cpu=-5))),
            ("absurd-count", lambda: am.ask("c", 10**12, Shape.of(cpu=100))),
        ]:
            try:
                await make()
                lines.append(f"{label} ACCEPTED")
            except FeitianError as exc:
                lines.append(f"{label} {type(exc).__name__} {exc.message}")
    return lines


if __name__ == "__main__":
    with open(sys.argv[1], "w") as f:
        f.write("\n".join(asyncio.run(main())) + "\n")
