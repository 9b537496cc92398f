"""``feitian bench ...``: benchmarks that print their figures (and peers' from the same run)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar

import click

from feitian.cli.output import emit_json

SECONDS = click.FloatRange(min=0, min_open=True)
ROUNDS = click.IntRange(min=1)


F = TypeVar("F", bound=Callable[..., Any])


def _dir_option(help_text: str) -> Callable[[F], F]:
    return click.option("--dir", "directory", default=None, metavar="DIR", help=help_text)


_json_option = click.option("--json", "as_json", is_flag=True, help="Print one JSON object.")
_insecure_option = click.option(
    "--insecure", is_flag=True, help="Without Zhongkui (mutual TLS and capabilities are on by default)."
)


@click.group()
def bench() -> None:
    """Measure feitian against its peers on this machine."""


@bench.command("rpc")
@click.option("--seconds", type=SECONDS, default=3.0, show_default=True, help="Seconds per measurement.")
@click.option("--no-peers", is_flag=True, help="Measure feitian only.")
@_json_option
def bench_rpc(seconds: float, no_peers: bool, as_json: bool) -> None:
    """Kuafu RPC: 100 B latency, 100 B throughput (64 in flight), 1 MiB upload (8 in flight).

    Runs feitian direct, secured and through the proxy, and the asyncio+msgpack and uvloop+msgpack peers
    (shipped with feitian; they need `pip install 'feitian[bench]'`, else they are reported as skipped), each
    server in its own process.
    """
    from feitian.bench.rpc import print_table, run_rpc_bench

    result = run_rpc_bench(seconds=seconds, with_peers=not no_peers)
    if as_json:
        emit_json(result)
    else:
        print_table(result)


@bench.command("consensus")
@click.option("--seconds", type=SECONDS, default=5.0, show_default=True, help="Seconds per measurement.")
@click.option(
    "--replicas", type=click.Choice(["1", "3", "5"]), default="3", show_default=True, help="Replica processes."
)
@_dir_option("Where the replicas keep their data (default: the system temp dir); choose the disk to measure.")
@_json_option
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
@click.option("--seconds", type=SECONDS, default=2.0, show_default=True, help="Seconds per measurement.")
@click.option("--rounds", type=ROUNDS, default=3, show_default=True, help="Alternating insecure/secured RPC rounds.")
@_json_option
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


@bench.command("coord")
@click.option("--seconds", type=SECONDS, default=2.0, show_default=True, help="Seconds per throughput measurement.")
@click.option(
    "--rounds", type=ROUNDS, default=3, show_default=True, help="Alternating rounds per measurement (median shown)."
)
@click.option(
    "--replicas", type=click.Choice(["1", "3"]), default="3", show_default=True, help="Replicas (and etcd members)."
)
@_dir_option("Where both clusters keep their data (default: the system temp dir); choose the disk to measure.")
@click.option("--no-etcd", is_flag=True, help="Measure feitian only.")
@_json_option
def bench_coord(
    seconds: float, rounds: int, replicas: str, directory: str | None, no_etcd: bool, as_json: bool
) -> None:
    """Nuwa (coordination) against etcd, same workload, same run: 100 B values and keys.

    Write latency and writes/s at 1, 16 and 64 in flight; linearizable and local reads/s at 64 in flight; watch
    latency (write sent -> event at another client); lock cycles/s; lock failover after SIGKILL of the holder.
    Both run side by side; each measurement alternates between them for --rounds rounds (median shown). etcd
    (apt-get install etcd-server) is started and stopped by the benchmark; without it, a note says so.
    """
    from feitian.bench.coord import print_table, run_coord_bench
    from feitian.cli.output import note

    result = run_coord_bench(
        seconds=seconds,
        replicas=int(replicas),
        directory=directory,
        with_etcd=not no_etcd,
        rounds=rounds,
        progress=note,
    )
    if as_json:
        emit_json(result)
    else:
        print_table(result)


@bench.command("coord-faults")
@click.option(
    "--seconds", type=click.IntRange(5, 3600), default=30, show_default=True, help="Length of the run in seconds."
)
@click.option("--clients", type=click.IntRange(1, 256), default=10, show_default=True, help="Closed-loop clients.")
@_insecure_option
@click.option("--seed", default=1, show_default=True, help="Seed of the fault schedule and of the clients' choices.")
@_dir_option("Where the replicas keep their data (default: the system temp dir).")
@_json_option
def bench_coord_faults(
    seconds: int, clients: int, insecure: bool, seed: int, directory: str | None, as_json: bool
) -> None:
    """Nuwa's availability while its leader fails every 2-4 s (SIGKILL and SIGSTOP in turn).

    3 coord replicas with the default Raft timing; CLIENTS clients read (80 %, linearizable) and write (20 %).
    Prints the seconds in which no read, and no write, completed, and the operations of every second.
    """
    from feitian.bench.coord_faults import print_report, run_coord_faults_bench
    from feitian.cli.output import note

    result = run_coord_faults_bench(
        seconds=seconds, clients=clients, secure=not insecure, seed=seed, directory=directory, progress=note
    )
    if as_json:
        emit_json(result)
    else:
        print_report(result)


@bench.command("dfs")
@click.option(
    "--size",
    "size_mib",
    type=click.IntRange(min=1),
    default=1024,
    show_default=True,
    help="File size in MiB (smaller: quicker).",
)
@click.option(
    "--creates",
    type=click.IntRange(min=1),
    default=5000,
    show_default=True,
    help="Empty files created for the metadata rate.",
)
@_dir_option("Where the cluster keeps its data (default: the system temp dir); choose the disk to measure.")
@_json_option
def bench_dfs(size_mib: int, creates: int, directory: str | None, as_json: bool) -> None:
    """Pangu: write and read throughput with 3 replicas and 1, metadata creates/s, re-replication after a
    SIGKILL, and the disk's own write+fdatasync and page-cache read rates in the same run."""
    from feitian.bench.dfs import print_report, run_dfs_bench

    figures = run_dfs_bench(size_mib=size_mib, creates=creates, directory=directory)
    if as_json:
        emit_json(figures)
    else:
        print_report(figures)


@bench.command("coord-scale")
@click.option(
    "--locks", type=click.IntRange(1, 10_000_000), default=1_000_000, show_default=True, help="Locks to take and hold."
)
@click.option(
    "--sessions", type=click.IntRange(1, 100_000), default=1000, show_default=True, help="Sessions holding them."
)
@click.option("--procs", type=click.IntRange(1, 64), default=2, show_default=True, help="Client processes.")
@click.option(
    "--concurrency",
    type=click.IntRange(1, 10_000),
    default=256,
    show_default=True,
    help="Acquisitions in flight per client process.",
)
@click.option(
    "--burst",
    "burst_sessions",
    type=click.IntRange(0, 100_000),
    default=1000,
    show_default=True,
    help="Sessions (and locks) of the burst on a fresh cluster; 0: no burst.",
)
@click.option(
    "--snapshot-every",
    type=click.IntRange(100, 10_000_000),
    default=20_000,
    show_default=True,
    help="The replicas' snapshot_every_entries.",
)
@click.option(
    "--keep-after-snapshot",
    type=click.IntRange(0, 10_000_000),
    default=5_000,
    show_default=True,
    help="The replicas' keep_entries_after_snapshot.",
)
@_insecure_option
@_dir_option("Where the replicas keep their data (default: the system temp dir).")
@click.option("--keep", is_flag=True, help="Leave the clusters' directories (logs, data) behind and say where.")
@_json_option
def bench_coord_scale(
    locks: int,
    sessions: int,
    procs: int,
    concurrency: int,
    burst_sessions: int,
    snapshot_every: int,
    keep_after_snapshot: int,
    insecure: bool,
    directory: str | None,
    keep: bool,
    as_json: bool,
) -> None:
    """Nuwa at the seeds' scale: LOCKS locks (Lock recipe, one directory each) over SESSIONS sessions.

    3 coord replicas; PROCS client processes take the locks and hold them. Prints the acquisition rate, RSS,
    the longest event-loop stall and the snapshot of each replica, a SIGKILLed follower's catch-up by snapshot,
    lock failover at full size, sessions lost, a burst of new sessions + acquisitions on a fresh cluster, and
    the targets (1,000,000 locks, no session lost, stall < 200 ms, <= 1.5 GiB per replica, catch-up < 30 s,
    failover < 10 s). Progress goes to stderr. Minutes at the default size, and gigabytes of memory.
    """
    from feitian.bench.coord_scale import ScaleOptions, print_report, run_coord_scale_bench
    from feitian.cli.output import note

    opts = ScaleOptions(
        locks=locks,
        sessions=sessions,
        procs=procs,
        concurrency=concurrency,
        secure=not insecure,
        snapshot_every_entries=snapshot_every,
        keep_entries_after_snapshot=keep_after_snapshot,
        burst_sessions=burst_sessions,
        directory=directory,
        keep=keep,
    )
    result = run_coord_scale_bench(opts, progress=note)
    if as_json:
        emit_json(result)
    else:
        print_report(result)


@bench.command("sched")
@click.option("--quick", is_flag=True, help="A smoke test at tiny scale (20 Tubos, 10 applications; seconds).")
@click.option("--tubos", type=click.IntRange(1, 100_000), default=None, help="Simulated Tubos (machines). [5000]")
@click.option("--apps", type=click.IntRange(1, 100_000), default=None, help="Applications submitted. [1000]")
@click.option("--procs", type=click.IntRange(1, 64), default=None, help="Processes of simulated Tubos. [4]")
@click.option("--seconds", type=SECONDS, default=None, help="The measured window of the service part. [20]")
@click.option("--no-core", is_flag=True, help="Skip the allocator core (one process) part.")
@click.option("--no-service", is_flag=True, help="Skip the FuxiMaster service and failover part.")
@_dir_option("Where the cluster keeps its data (default: the system temp dir).")
@_json_option
def bench_sched(
    quick: bool,
    tubos: int | None,
    apps: int | None,
    procs: int | None,
    seconds: float | None,
    no_core: bool,
    no_service: bool,
    directory: str | None,
    as_json: bool,
) -> None:
    """Fuxi at 5,000 machines: the allocator core, FuxiMaster over real RPC, and its failover.

    Core (one process): grant decisions/s and CPU per decision at 5,000 machines x 10,000 applications; memory
    and decisions/s at 100,000 machines. Service: one FuxiMaster (and a standby, one Nuwa replica) with TUBOS
    simulated Tubos heartbeating every second over Kuafu and APPS applications whose masters ask, hold, return
    and ask again: grant latency p50/p99 and the FuxiMaster's CPU and RSS. Failover: SIGKILL of the leader,
    then election, recovery and the first grant by the new leader. Progress goes to stderr; minutes at the
    default size.
    """
    from feitian.bench.sched import SchedBenchOptions, print_report, run_sched_bench
    from feitian.cli.output import note

    given = {"tubos": tubos, "apps": apps, "procs": procs, "seconds": seconds}
    overrides: dict[str, Any] = {k: v for k, v in given.items() if v is not None}
    overrides.update(core=not no_core, service=not no_service, directory=directory)
    opts = SchedBenchOptions.quick(**overrides) if quick else SchedBenchOptions(**overrides)
    result = run_sched_bench(opts, progress=note)
    if as_json:
        emit_json(result)
    else:
        print_report(result)


def _names_option(name: str, choices: tuple[str, ...], help_text: str) -> Callable[[F], F]:
    def parse(_ctx: click.Context, _param: click.Parameter, value: str | None) -> tuple[str, ...]:
        if value is None:
            return choices
        names = tuple(n.strip() for n in value.split(",") if n.strip())
        unknown = [n for n in names if n not in choices]
        if unknown or not names:
            raise click.BadParameter(f"{value!r}: choose from {', '.join(choices)} (comma-separated)")
        return names

    return click.option(name, callback=parse, metavar="A,B", help=help_text)


@bench.command("dag-peers")
@_names_option("--what", ("noop", "wordcount", "terasort"), "Figures to run (default: all three).")
@_names_option("--peers", ("ray", "dask", "gnusort", "single"), "Peers to run (default: all four).")
@click.option(
    "--size-mb",
    type=click.FloatRange(min=0, min_open=True),
    default=None,
    help="Both inputs about N MB (default: wordcount 512 MiB, terasort 1 GB).",
)
@click.option("--tasks", type=click.IntRange(min=1), default=None, help="No-op tasks. [20000]")
@click.option("--reps", type=ROUNDS, default=1, show_default=True, help="Repetitions per peer (the best is shown).")
@click.option("--root", default=None, metavar="DIR", help="Where inputs are cached and logs kept (default: temp dir).")
@click.option("--timeout", type=SECONDS, default=None, help="Seconds per peer run before it is stopped.")
@click.option("--seed", type=int, default=1, show_default=True, help="The inputs' seed.")
@click.option("--skip-missing", is_flag=True, help="Report peers whose framework is not installed as skipped.")
@click.option("--drop-inputs", is_flag=True, help="Delete the generated inputs at the end.")
@_json_option
def bench_dag_peers(
    what: tuple[str, ...],
    peers: tuple[str, ...],
    size_mb: float | None,
    tasks: int | None,
    reps: int,
    root: str | None,
    timeout: float | None,
    seed: int,
    skip_missing: bool,
    drop_inputs: bool,
    as_json: bool,
) -> None:
    """The DAG peers on this machine: Ray, Dask, GNU sort and one process (docs/bench-dagpeers.md).

    20,000 no-op tasks (Ray, Dask), wordcount of 512 MiB of Zipf text (Ray, Dask, one process) and terasort of
    1 GB of 100-byte records (Dask, GNU sort, one process), with the same task bodies, 2 workers each. Inputs are
    generated once under --root and reused; each peer runs in its own process (a crash or a hang past --timeout
    is reported, not fatal) and checks its own output. Ray and Dask need `pip install 'feitian[bench]'`. Exit 1
    if a peer failed or is not installed.
    """
    from feitian.bench.dagpeers.runner import DagPeersOptions, MissingPeersError, print_table, run_dag_peers
    from feitian.cli.output import note
    from feitian.errors import FeitianError

    sizes: dict[str, Any] = {}
    if size_mb is not None:
        sizes = {"wordcount_bytes": int(size_mb * 1e6), "terasort_bytes": int(size_mb * 1e6)}
    if root is not None:
        sizes["root"] = root
    opts = DagPeersOptions(
        what=what,
        peers=peers,
        tasks=tasks or DagPeersOptions.tasks,
        reps=reps,
        timeout_s=timeout,
        seed=seed,
        skip_missing=skip_missing,
        drop_inputs=drop_inputs,
        **sizes,
    )
    try:
        result = run_dag_peers(opts, progress=note)
    except MissingPeersError as exc:
        raise FeitianError(str(exc), hint=exc.hint) from None
    if as_json:
        emit_json(result)
    else:
        print_table(result)
    failed = [f"{r['peer']} {r['figure']}" for r in result["rows"] if r["status"] in ("failed", "timeout")]
    if failed:
        raise FeitianError(f"peer runs failed: {', '.join(failed)}", hint=f"see the logs under {opts.root}/logs")
