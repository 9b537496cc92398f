"""``feitian rpc ping|call``: talk to any Kuafu server."""

from __future__ import annotations

import time

import click

from feitian.cli.cluster import cluster_option
from feitian.cli.identity import cluster_client, credential_options, identity_option, read_token
from feitian.cli.output import emit_json
from feitian.deploy import LocalCluster, resolve_cluster_dir
from feitian.errors import InvalidArgumentError
from feitian.rpc import Health, HealthReply
from feitian.runtime.eventloop import run

POSITIVE_SECONDS = click.FloatRange(min=0, min_open=True)


def _target(target: str, cluster_dir: str | None) -> tuple[str, LocalCluster]:
    """An address as given, or the first address of the cluster process with that name."""
    lc = LocalCluster(resolve_cluster_dir(cluster_dir))
    if "://" in target:
        return target, lc
    return lc.load().find(target).addresses[0], lc


@click.group()
def rpc() -> None:
    """Call Kuafu servers directly."""


@rpc.command()
@click.argument("target")
@cluster_option
@click.option("--count", "-c", type=click.IntRange(min=1), default=1, show_default=True, help="Pings to send.")
@click.option(
    "--timeout", type=POSITIVE_SECONDS, default=3.0, show_default=True, help="Seconds to wait for each answer."
)
@click.option("--proxy", is_flag=True, help="Go through the cluster's per-machine proxy.")
@identity_option
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
def ping(
    target: str, cluster_dir: str | None, count: int, timeout: float, proxy: bool, identity: str | None, as_json: bool
) -> None:
    """Health-check TARGET: tcp://HOST:PORT, unix://PATH, nuwa://CLUSTER/SERVICE, or a cluster process name.

    In a secured cluster the check is authenticated (mutual TLS) as --identity.
    """
    address, lc = _target(target, cluster_dir)

    async def go() -> list[tuple[HealthReply, float]]:
        out = []
        async with await cluster_client(lc, "feitian-rpc-ping", identity=identity, proxy=proxy) as client:
            for _ in range(count):
                t0 = time.perf_counter()
                reply = await client.call(address, Health(), timeout=timeout)
                out.append((reply, (time.perf_counter() - t0) * 1000))
        return out

    results = run(go())
    if as_json:
        emit_json([{"address": address, "rtt_ms": round(ms, 3), "health": h} for h, ms in results])
        return
    for h, ms in results:
        click.echo(
            f"{h.status} from {h.server_name} ({h.role}, pid {h.pid}, feitian {h.version}) at {address}: {ms:.2f} ms"
        )


@rpc.command()
@click.argument("target")
@click.argument("method")
@cluster_option
@click.option("--text", default=None, help="Send a string message.")
@click.option("--map", "pairs", multiple=True, metavar="KEY=VALUE", help="Send a map message (repeatable).")
@click.option(
    "--timeout", type=POSITIVE_SECONDS, default=5.0, show_default=True, help="Seconds to wait for the answer."
)
@click.option("--proxy", is_flag=True, help="Go through the cluster's per-machine proxy.")
@credential_options
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
def call(
    target: str,
    method: str,
    cluster_dir: str | None,
    text: str | None,
    pairs: tuple[str, ...],
    timeout: float,
    proxy: bool,
    identity: str | None,
    capability_files: tuple[str, ...],
    token_file: str | None,
    as_json: bool,
) -> None:
    """Call METHOD on TARGET with a string (--text) or string-map (--map) message, the seed's message kinds.

    In a secured cluster the call is made as --identity, presenting its capabilities (or exactly the
    --capability files, and a --token); a refusal exits 6 with the server's reason.
    """
    if (text is None) == (not pairs):
        raise InvalidArgumentError("give exactly one of --text or --map")
    mapping: dict[str, str] = {}
    for pair in pairs:
        key, eq, value = pair.partition("=")
        if not eq or not key:
            raise InvalidArgumentError(f"--map {pair!r}: expected KEY=VALUE")
        mapping[key] = value
    address, lc = _target(target, cluster_dir)
    token = read_token(token_file)

    async def go() -> str | dict[str, str]:
        async with await cluster_client(
            lc, "feitian-rpc-call", identity=identity, capability_files=capability_files, proxy=proxy
        ) as client:
            if token is not None:
                await client.present_token(address, token, timeout=timeout)
            if text is not None:
                return await client.call_text(address, method, text, timeout=timeout)
            return await client.call_map(address, method, mapping, timeout=timeout)

    result = run(go())
    if as_json:
        emit_json(result)
    elif isinstance(result, dict):
        for key, value in result.items():
            click.echo(f"{key}={value}")
    else:
        click.echo(result)
