"""``feitian cluster up|status|down`` and ``start|stop|restart NODE...``: a local cluster of real processes on
127.0.0.1."""

from __future__ import annotations

import click

from feitian.cli.identity import identity_option
from feitian.cli.output import emit_json, note, table
from feitian.deploy import LocalCluster, ProcessRecord, ProcessStatus, default_spec, resolve_cluster_dir
from feitian.errors import UnavailableError

cluster_option = click.option(
    "--cluster",
    "cluster_dir",
    metavar="DIR",
    default=None,
    help="Cluster directory (default: $FEITIAN_CLUSTER, else ~/.local/share/feitian/cluster).",
)


REPLICAS = click.IntRange(0, 7)
GRACE = click.FloatRange(0)
TIMEOUT = click.FloatRange(0, min_open=True)


def _odd(ctx: click.Context, param: click.Parameter, value: int) -> int:
    """A replicated group (Raft) needs a majority: an even count tolerates no more failures than one fewer, and
    two replicas stop when either stops. Refused, not rounded."""
    if value and value % 2 == 0:
        raise click.BadParameter(
            f"{value} replicas: a replicated group needs an odd number (1, 3, 5 or 7; 0 for none) — {value} "
            f"tolerate no more failures than {value - 1}, and every write waits for {value // 2 + 1} of them",
            ctx=ctx,
            param=param,
        )
    return value


@click.group()
def cluster() -> None:
    """Start, inspect and stop a local cluster."""


@cluster.command()
@click.option(
    "--dir",
    "directory",
    metavar="DIR",
    default=None,
    help="Where the cluster keeps its state, configs, logs and data (default as for --cluster).",
)
@click.option(
    "--echo", "echo_nodes", type=click.IntRange(0, 64), default=2, show_default=True, help="Diagnostic echo servers."
)
@click.option("--proxy/--no-proxy", default=True, show_default=True, help="Start a per-machine Kuafu proxy.")
@click.option(
    "--kv",
    "kv_replicas",
    type=REPLICAS,
    default=3,
    show_default=True,
    callback=_odd,
    help="Replicas of the replicated key-value store (the consensus layer's workload): 1, 3, 5 or 7; 0 for none.",
)
@click.option(
    "--dfs-masters",
    type=REPLICAS,
    default=3,
    show_default=True,
    callback=_odd,
    help="Pangu (file system) master replicas: 1, 3, 5 or 7; 0 for no file system.",
)
@click.option(
    "--chunkservers",
    type=click.IntRange(0, 64),
    default=4,
    show_default=True,
    help="Pangu chunk servers (racks r1, r2, r3 in turn), 0..64; they need masters.",
)
@click.option(
    "--coord",
    "coord_replicas",
    type=REPLICAS,
    default=3,
    show_default=True,
    callback=_odd,
    help="Nuwa (coordination service) replicas: 3 or 5 (1 or 7 also work); 0 for none (nuwa:// then resolves "
    "from the state file).",
)
@click.option(
    "--fuxi-masters",
    type=click.IntRange(0, 5),
    default=2,
    show_default=True,
    help="FuxiMasters (the resource manager; one leads, elected through Nuwa), 0..5; they need Nuwa.",
)
@click.option(
    "--tubos",
    type=click.IntRange(0, 64),
    default=None,
    help="Tubo agents, each posing as one machine [default: one per chunk server, as that machine].",
)
@click.option(
    "--timeout",
    type=TIMEOUT,
    default=30.0,
    show_default=True,
    help="Seconds to wait for every process to be ready.",
)
@click.option(
    "--insecure",
    is_flag=True,
    help="Run without security: no authority, no TLS, every caller trusted (benchmarks and debugging only).",
)
@click.option("--json", "as_json", is_flag=True, help="Print the cluster state as JSON.")
def up(
    directory: str | None,
    echo_nodes: int,
    proxy: bool,
    kv_replicas: int,
    dfs_masters: int,
    chunkservers: int,
    coord_replicas: int,
    fuxi_masters: int,
    tubos: int | None,
    timeout: float,
    insecure: bool,
    as_json: bool,
) -> None:
    """Start the cluster's services as background processes and wait until each is healthy.

    The cluster is secured: `up` creates the authority, the CA, an `admin` identity for you and one identity per
    node (in DIR/security), starts the authority first, and every node serves mutual TLS only.
    """
    if chunkservers and not dfs_masters and _given(click.get_current_context(), "chunkservers"):
        raise click.BadParameter(
            f"{chunkservers} chunk servers without masters: they would have nothing to register with",
            param_hint="'--chunkservers'",
        )
    lc = LocalCluster(resolve_cluster_dir(directory))
    specs = default_spec(
        echo=echo_nodes,
        proxy=proxy,
        kv=kv_replicas,
        dfs_masters=dfs_masters,
        chunkservers=chunkservers,
        coord=coord_replicas,
        secure=not insecure,
        fuxi_masters=fuxi_masters if coord_replicas else 0,
        tubos=tubos,
    )
    state = lc.up(specs, timeout_s=timeout, progress=note, secure=not insecure)
    if as_json:
        emit_json(state)
        return
    note(f"cluster {state.name} is up in {state.dir}")
    table(["NAME", "ROLE", "PID", "ENDPOINTS"], [[p.name, p.role, p.pid, _endpoints(p)] for p in state.processes])


@cluster.command()
@cluster_option
@click.option("--timeout", type=TIMEOUT, default=2.0, show_default=True, help="Seconds to wait for each health answer.")
@identity_option
@click.option(
    "--stats", "with_stats", is_flag=True, help="Also list each node's counters and gauges (what /metrics shows)."
)
@click.option("--json", "as_json", is_flag=True, help="Print JSON (with each node's full node.Stats reply).")
def status(cluster_dir: str | None, timeout: float, identity: str | None, with_stats: bool, as_json: bool) -> None:
    """Show each process of the cluster and its uniform status (node.Stats): whether it is healthy, its uptime
    and version, and a replica's role and term.

    Exits 3 if any process is not healthy.
    """
    lc = LocalCluster(resolve_cluster_dir(cluster_dir))
    rows = lc.status(timeout, identity)
    if as_json:
        emit_json({"dir": lc.dir, "processes": rows})
    else:
        table(
            ["NAME", "ROLE", "PID", "STATE", "ENDPOINTS", "DETAIL"],
            [[r.name, r.role, r.pid, r.state, _endpoints(r), r.detail] for r in rows],
        )
        if with_stats:
            click.echo()
            table(["NAME", "METRIC", "KIND", "VALUE"], _figures(rows))
    bad = [r.name for r in rows if r.state != "ok"]
    if bad:
        raise UnavailableError(f"not healthy: {', '.join(bad)}", hint=f"see the logs in {lc.dir}/logs")


@cluster.command()
@cluster_option
@click.option(
    "--grace", type=GRACE, default=10.0, show_default=True, help="Seconds to wait after SIGTERM before SIGKILL."
)
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
def down(cluster_dir: str | None, grace: float, as_json: bool) -> None:
    """Stop exactly the processes this cluster started (by pid), and report any that would not stop."""
    lc = LocalCluster(resolve_cluster_dir(cluster_dir))
    stopped, stuck = lc.down(grace_s=grace)
    if as_json:
        emit_json({"dir": lc.dir, "stopped": stopped, "would_not_stop": stuck})
    else:
        note(f"stopped {len(stopped)} process(es) of the cluster in {lc.dir}")
    if stuck:
        _stuck(lc, stuck)


node_names = click.argument("names", metavar="NODE...", nargs=-1, required=True)


@cluster.command()
@node_names
@cluster_option
@click.option(
    "--timeout", type=TIMEOUT, default=30.0, show_default=True, help="Seconds to wait for the nodes to be healthy."
)
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
def start(names: tuple[str, ...], cluster_dir: str | None, timeout: float, as_json: bool) -> None:
    """Start stopped nodes of the cluster again (names as `cluster status` shows them), with the same config,
    addresses and data, and wait until each is healthy. Nodes already running are left alone."""
    lc = LocalCluster(resolve_cluster_dir(cluster_dir))
    started, running = lc.start_nodes(names, timeout_s=timeout, progress=None if as_json else note)
    if as_json:
        emit_json({"dir": lc.dir, "started": started, "already_running": running})
        return
    for name in running:
        note(f"{name} is already running")
    table(["NAME", "ROLE", "PID", "ENDPOINTS"], [[p.name, p.role, p.pid, _endpoints(p)] for p in started])


@cluster.command()
@node_names
@cluster_option
@click.option(
    "--grace", type=GRACE, default=10.0, show_default=True, help="Seconds to wait after SIGTERM before SIGKILL."
)
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
def stop(names: tuple[str, ...], cluster_dir: str | None, grace: float, as_json: bool) -> None:
    """Stop nodes of the cluster (SIGTERM, then SIGKILL after --grace) and wait until they are gone; the
    cluster keeps their records, so `cluster status` shows them stopped and `cluster start` brings them back."""
    lc = LocalCluster(resolve_cluster_dir(cluster_dir))
    stopped, not_running, stuck = lc.stop_nodes(names, grace_s=grace)
    if as_json:
        emit_json({"dir": lc.dir, "stopped": stopped, "not_running": not_running, "would_not_stop": stuck})
    else:
        for name in stopped:
            note(f"stopped {name}")
        for name in not_running:
            note(f"{name} was not running")
    _stuck(lc, stuck)


@cluster.command()
@node_names
@cluster_option
@click.option(
    "--grace", type=GRACE, default=10.0, show_default=True, help="Seconds to wait after SIGTERM before SIGKILL."
)
@click.option(
    "--timeout", type=TIMEOUT, default=30.0, show_default=True, help="Seconds to wait for the nodes to be healthy."
)
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
def restart(names: tuple[str, ...], cluster_dir: str | None, grace: float, timeout: float, as_json: bool) -> None:
    """Stop nodes of the cluster (as `cluster stop`), then start them again (as `cluster start`)."""
    lc = LocalCluster(resolve_cluster_dir(cluster_dir))
    stopped, _, stuck = lc.stop_nodes(names, grace_s=grace)
    _stuck(lc, stuck)
    started, _ = lc.start_nodes(names, timeout_s=timeout, progress=None if as_json else note)
    if as_json:
        emit_json({"dir": lc.dir, "stopped": stopped, "started": started})
        return
    table(["NAME", "ROLE", "PID", "ENDPOINTS"], [[p.name, p.role, p.pid, _endpoints(p)] for p in started])


def _given(ctx: click.Context, name: str) -> bool:
    return ctx.get_parameter_source(name) not in (click.core.ParameterSource.DEFAULT, None)


def _endpoints(p: ProcessRecord | ProcessStatus) -> str:
    return " ".join(p.addresses + [f"{k}={v}" for k, v in p.extra.items()])


def _figures(rows: list[ProcessStatus]) -> list[list[object]]:
    out: list[list[object]] = []
    for r in rows:
        if r.stats is None:
            continue
        out.extend([r.name, name, "counter", value] for name, value in r.stats.counters.items())
        out.extend([r.name, name, "gauge", _number(value)] for name, value in r.stats.gauges.items())
    return out


def _number(value: float) -> str:
    return str(int(value)) if value.is_integer() else f"{value:.3f}".rstrip("0")


def _stuck(lc: LocalCluster, stuck: list[str]) -> None:
    if stuck:
        raise UnavailableError(
            f"would not stop: {', '.join(stuck)}", hint=f"check them with `ps`; pids are in {lc.state_path}"
        )
