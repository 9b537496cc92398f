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


@bench.command("consensus")
@click.option("--seconds", default=5.0, show_default=True, help="Seconds per measurement.")
@click.option(
    "--replicas", type=click.Choice(["1", "3", "5"]), default="3", show_default=True, help="Replica processes."
)
@click.option(
    "--dir",
    "directory",
    default=None,
    metavar="DIR",
    help="Where the replicas keep their data (default: the system temp dir); choose the disk to measure.",
)
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object.")
def bench_consensus(seconds: float, replicas: str, directory: str | None, as_json: bool) -> None:
    """The replicated log: 100-byte proposals at 1, 16 and 64 in flight, with fsync, on real processes.

    Prints proposals/s, commit latency p50/p99, entries per fsync, and the raw 4 KiB append+fdatasync rate of
    the same disk measured in the same run.
    """
    from feitian.bench.consensus import print_table, run_consensus_bench

    figures = run_consensus_bench(seconds=seconds, replicas=int(replicas), directory=directory)
    if as_json:
        emit_json(figures)
    else:
        print_table(figures)


@bench.command("security")
@click.option("--seconds", default=2.0, show_default=True, help="Seconds per measurement.")
@click.option("--rounds", default=3, show_default=True, help="Alternating insecure/secured RPC rounds.")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object.")
def bench_security(seconds: float, rounds: int, as_json: bool) -> None:
    """Zhongkui's cost: secured connections per second, and the RPC figures with security off and on.

    Starts an insecure and a secured cluster (one echo node each) and measures both in the same run.
    """
    from feitian.bench.security import print_report, run_security_bench

    result = run_security_bench(seconds=seconds, rounds=rounds)
    if as_json:
        emit_json(result)
    else:
        print_report(result)
