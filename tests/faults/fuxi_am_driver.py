"""A scriptable application master for the fault tests.

``am_driver.py OUT SPEC_JSON``: SPEC is ``{"workers": [{"name", "code", "cpu", "memory"}], "stay": bool,
"more_after_failover": {"name", "code"} | null}``. It asks for one unit per worker, starts each worker's Python
``code`` on its grant, records every event to ``OUT/events.jsonl`` (and its epoch changes), returns a grant when
its worker ends, and exits 0 when every worker has ended — unless ``stay``, then it runs until it is killed.
After a FuxiMaster failover (a new epoch) it asks for one more worker if ``more_after_failover`` is given.
"""

from __future__ import annotations

import asyncio
import json
import os
import sys

import msgspec

from feitian.sched.client import AppMaster
from feitian.sched.core import SendGrant, Shape
from feitian.sched.messages import WorkerEnded


def record(out: str, what: dict[str, object]) -> None:
    with open(os.path.join(out, "events.jsonl"), "a") as f:
        f.write(json.dumps(what) + "\n")


async def main(out: str, spec: dict[str, object]) -> int:
    workers = {w["name"]: w for w in spec["workers"]}  # type: ignore[attr-defined]
    pending = list(workers)
    async with AppMaster.from_env() as am:
        attempt = os.environ.get("FEITIAN_ATTEMPT")
        record(out, {"registered": am.epoch, "attempt": attempt, "held": sorted(am.held), "pid": os.getpid()})
        first_epoch = am.epoch
        if os.environ.get("FEITIAN_ATTEMPT", "1") == "1":
            for name in pending:
                w = workers[name]
                await am.ask(name, 1, Shape.of(cpu=int(w.get("cpu", 500)), memory=int(w.get("memory", 64 << 20))))
        ended = 0
        more = spec.get("more_after_failover")
        while spec.get("stay") or ended < len(workers):
            events = await am.poll(2.0)
            if am.epoch != first_epoch:
                record(out, {"epoch": am.epoch, "held": sorted(am.held)})
                first_epoch = am.epoch
                if more:
                    workers[more["name"]] = more  # type: ignore[index]
                    await am.ask(more["name"], 1, Shape.of(cpu=500, memory=64 << 20))  # type: ignore[index]
                    more = None
            for event in events:
                record(out, {"event": type(event).__name__, **msgspec.to_builtins(event)})
                if isinstance(event, SendGrant):
                    w = workers[event.grant.unit]
                    await am.start_worker(event.grant, str(w["name"]), [sys.executable, "-c", str(w["code"])])
                elif isinstance(event, WorkerEnded):
                    ended += 1
                    await am.give_back([event.grant_id])
    return 0


if __name__ == "__main__":
    sys.exit(asyncio.run(main(sys.argv[1], json.loads(sys.argv[2]))))
