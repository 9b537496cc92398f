"""``feitian bench ...``: benchmarks that print their figures (and peers' from the same run)."""

from __future__ import annotations

import click

from feitian.cli.output import emit_json


@click.group()
def bench() -> None:
    """Measure feitian against its peers on this machine."""


@bench.command("rpc")
@click.option("--seconds", default=3.0, show_default=True, help="Seconds per measurement.")
@click.option(
    "--peers-dir",
    default=None,
    metavar="DIR",
    help="Directory of the peer programs (default: $FEITIAN_BENCH_PEERS, else ../shared/bench/rpc-peers "
    "next to the source tree).",
)
@click.option("--no-peers", is_flag=True, help="Measure feitian only.")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object.")
def bench_rpc(seconds: float, peers_dir: str | None, no_peers: bool, as_json: bool) -> None:
    """Kuafu RPC: 100 B latency, 100 B throughput (64 in flight), 1 MiB upload (8 in flight).

    Runs feitian direct, feitian through the proxy, and the asyncio+msgpack and uvloop+msgpack peers, each
    server in its own process.
    """
    from feitian.bench.rpc import print_table, run_rpc_bench

    result = run_rpc_bench(seconds=seconds, peers_dir=peers_dir, with_peers=not no_peers)
    if as_json:
        emit_json(result)
    else:
        print_table(result)
