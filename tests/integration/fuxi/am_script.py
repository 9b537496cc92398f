"""An application master for the tests: asks for N workers of one unit, starts each on its grant (a worker writes
``<out>/<name>-<machine>``), returns each grant when its worker ends, and exits 0 once all N finished (1 if one
failed)."""

from __future__ import annotations

import asyncio
import sys

from feitian.sched.client import AppMaster
from feitian.sched.core import SendGrant, Shape
from feitian.sched.messages import WorkerEnded


async def main(out: str, count: int) -> int:
    async with AppMaster.from_env() as am:
        await am.ask("work", count, Shape.of(cpu=500, memory=64 << 20))
        started = ended = failed = 0
        while ended < count:
            for event in await am.poll(5.0):
                if isinstance(event, SendGrant):
                    started += 1
                    name = f"w{started}"
                    code = f"import os; open(os.path.join({out!r}, '{name}-' + os.environ['FEITIAN_MACHINE']), 'w')"
                    await am.start_worker(event.grant, name, [sys.executable, "-c", code])
                elif isinstance(event, WorkerEnded):
                    ended += 1
                    failed += event.state != "finished"
                    await am.give_back([event.grant_id])
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(asyncio.run(main(sys.argv[1], int(sys.argv[2]))))
