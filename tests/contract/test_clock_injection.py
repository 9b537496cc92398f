"""No driver reads the event loop's clock or the OS clock directly, nor sleeps on the loop: time is read and
waited on through an injected ``feitian.base.clock.Clock`` (ARCHITECTURE.md, Invariants), so a test or a
simulation can run a driver on a manual clock. The few places that may read real time say why below."""

from __future__ import annotations

import re
from pathlib import Path

SRC = Path(__file__).resolve().parents[2] / "src" / "feitian"

# Measurement, process management and the user's shell may read the real clock.
EXEMPT_PACKAGES = ("bench", "cli", "testing", "deploy")

READS = re.compile(
    r"loop\.time\(\)|get_running_loop\(\)\.time\(\)|\btime\.(monotonic|monotonic_ns|time|time_ns|perf_counter)\(\)"
    r"|asyncio\.sleep\((?!0\))"
)

# file -> why it may read the loop's or the OS's clock
ALLOWED = {
    "base/clock.py": "the real clock itself",
    # Kuafu: call deadlines are asyncio timeouts and cross to the server as a relative budget; keepalives are
    # protocol timers (loop.call_later) stamped on every frame received. Both stay on the loop's clock.
    "rpc/client.py": "call deadlines (asyncio timeouts)",
    "rpc/channel.py": "keepalive protocol timer; the deadline of a connection wait",
    "rpc/stream.py": "keepalive: when a frame last arrived, on the loop's timer clock",
    "rpc/context.py": "documents that CallContext.deadline is loop time",
    "rpc/server.py": "the deadline a request carries, turned into loop time for asyncio timeouts",
    "rpc/server_connection.py": "a request's deadline (loop time)",
    "runtime/procs.py": "waits for OS processes to exit, in real time",
    "runtime/wal_bench.py": "a benchmark",
    "security/bench.py": "a benchmark",
    "replica/log.py": "times real disk writes to decide whether to move them off the loop",
    "security/authority/store.py": "the wall-clock creation time stored with a principal",
    "security/authority/cluster.py": (
        "a local cluster's setup and its clients' renewals (run by `cluster up` and the CLI; it was deploy's): the "
        "wall time capabilities are minted at and checked against"
    ),
    "coord/server/backup.py": "a unique suffix for a kept directory's name",
    "coord/role.py": "polls for the server's first address at start-up (no timing logic)",
    "rpc/gateway/site.py": "a pause after a failed accept() (an OS error)",
    "replica/router.py": "the deadline of the Kuafu call being handled (loop time) turned into seconds left",
    "replica/service.py": "the deadline of the Kuafu call being handled (loop time) turned into seconds left",
    "rpc/gateway/server.py": "an HTTP call's deadline, turned into loop time for the RPC CallContext",
}


def offenders() -> dict[str, list[str]]:
    found: dict[str, list[str]] = {}
    for path in sorted(SRC.rglob("*.py")):
        rel = path.relative_to(SRC).as_posix()
        if rel.split("/", 1)[0] in EXEMPT_PACKAGES:
            continue
        for number, line in enumerate(path.read_text().splitlines(), 1):
            if READS.search(line) and not line.lstrip().startswith("#"):
                found.setdefault(rel, []).append(f"{number}: {line.strip()}")
    return found


def test_drivers_read_and_wait_on_an_injected_clock() -> None:
    bad = {rel: lines for rel, lines in offenders().items() if rel not in ALLOWED}
    assert not bad, (
        "read or wait on the injected Clock (feitian.base.clock), not the loop's or the OS's:\n"
        + "\n".join(f"  {rel}:{line}" for rel, lines in bad.items() for line in lines)
    )


def test_every_exemption_is_still_needed() -> None:
    stale = sorted(set(ALLOWED) - set(offenders()))
    assert not stale, f"no longer read the real clock, drop them from ALLOWED: {stale}"
