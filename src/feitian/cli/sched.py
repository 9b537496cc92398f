"""``feitian sched nodes|apps|app|logs|submit|kill|quota|status``: Fuxi (the resource manager) from the shell.

Every command talks to the FuxiMasters of a local cluster (``--cluster``; their addresses are the
``fuxi-master`` processes of its state file, as ``feitian cluster up`` recorded them) as ``--identity`` (default
admin), and follows the leader. Amounts are printed for people (cores, GiB) and given as millicores and sizes
(``512MiB``); ``--json`` prints the service's own records (millicores, bytes). docs/sched.md, "Using Fuxi from
the command line".
"""

from __future__ import annotations

import asyncio
import contextlib
import re
import sys
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any, TypeVar

import click
import msgspec

from feitian.base import GiB, KiB, MiB
from feitian.cli.cluster import cluster_option
from feitian.cli.identity import identity_option
from feitian.cli.output import emit_json, note, table
from feitian.deploy import LocalCluster, resolve_cluster_dir
from feitian.errors import FeitianError, InvalidArgumentError, NotFoundError
from feitian.rpc import ClientConfig
from feitian.runtime.eventloop import run
from feitian.sched import (
    AppInfo,
    AppState,
    LogChunk,
    MasterStatusReply,
    NodeInfo,
    ProcInfo,
    QuotaInfo,
    SchedClient,
    parse_grant,
    parse_spec,
)

T = TypeVar("T")

ENDED = frozenset({AppState.SUCCEEDED, AppState.FAILED, AppState.KILLED})

FUXI_MASTER_ROLE = "fuxi-master"
DEFAULT_TIMEOUT_S = 30.0  # how long each call is retried across the FuxiMasters (a failover takes a few seconds)
EXIT_INTERRUPTED = 130  # Ctrl-C, as every command (feitian.cli.main)
WAIT_POLL_S = 0.5  # `submit --wait`: how often the application is looked at
FOLLOW_POLL_S = 0.5  # `logs --follow`: how often the Tubo is asked for more
MAX_NAME_BYTES = 256  # an application's name: a label for people (the ID is FuxiMaster's)
DEFAULT_MASTER_CPU = 500  # FuxiMaster's own default shape for an application master: half a core, 256 MiB
DEFAULT_MASTER_MEMORY = 256 * MiB
TUBO_ENV_PREFIX = "FEITIAN_"  # what Tubo sets in each process's environment (docs/sched.md, "Isolation")
SIZE_RESOURCES = ("memory", "disk")  # amounts in bytes: given as sizes (512MiB)

TiB = 1 << 40
_UNITS = {"": 1, "b": 1, "k": KiB, "kib": KiB, "m": MiB, "mib": MiB, "g": GiB, "gib": GiB, "t": TiB, "tib": TiB}
_SIZE = re.compile(r"\s*(\d+(?:\.\d+)?)\s*([A-Za-z]*)\s*")
_GROUP = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}")

json_option = click.option("--json", "as_json", is_flag=True, help="Print JSON.")
timeout_option = click.option(
    "--timeout",
    "timeout_s",
    type=click.FloatRange(min=0, min_open=True),
    default=DEFAULT_TIMEOUT_S,
    show_default=True,
    help="Seconds to keep trying the FuxiMasters before giving up (exit 3).",
)


def _common(fn: Callable[..., Any]) -> Callable[..., Any]:
    return cluster_option(identity_option(timeout_option(fn)))


# -- amounts ---------------------------------------------------------------------------------------------------


def parse_size(text: str, what: str) -> int:
    """``512MiB``, ``1.5GiB``, ``4G``, ``1048576`` -> bytes (binary units; K/M/G/T mean KiB/MiB/GiB/TiB)."""
    found = _SIZE.fullmatch(text)
    unit = _UNITS.get(found.group(2).lower()) if found else None
    if found is None or unit is None:
        raise InvalidArgumentError(
            f"{what}: {text!r} is not a size", hint="a number of bytes with an optional unit: 512MiB, 2GiB, 4G, 1048576"
        )
    value = int(float(found.group(1)) * unit)
    if value <= 0:
        raise InvalidArgumentError(f"{what}: {text!r} is not a positive size", hint="e.g. 512MiB")
    return value


def parse_amount(resource: str, text: str, what: str) -> int:
    """One resource's amount in a quota: a size for memory and disk, else a whole number (cpu in millicores).
    At least 1: FuxiMaster lists a quota of 0 as no limit, so 0 is refused rather than shown wrongly."""
    if text.strip().startswith("-"):
        raise InvalidArgumentError(f"{what}: {text!r} is negative", hint="amounts are 1 or more")
    if resource in SIZE_RESOURCES:
        return parse_size(text, what)
    if not text.strip().isdigit() or int(text) == 0:
        raise InvalidArgumentError(
            f"{what}: {text!r} is not a whole number of 1 or more",
            hint="cpu is in millicores (1000 = one core), net in Mbit/s, virtual resources are counts",
        )
    return int(text)


def _cores(millis: int) -> str:
    return f"{millis / 1000:g}"


def _gib(size: int) -> str:
    return f"{size / GiB:.1f}"


def _amount(resource: str, value: int) -> str:
    if resource == "cpu":
        return f"cpu={_cores(value)} cores"
    if resource in SIZE_RESOURCES:
        return f"{resource}={_gib(value)} GiB"
    if resource == "net":
        return f"net={value} Mbit/s"
    return f"{resource}={value}"


def _amounts(values: dict[str, int], empty: str = "-") -> str:
    order = ["cpu", "memory", "disk", "net"]
    names = sorted(values, key=lambda r: (order.index(r) if r in order else len(order), r))
    return ", ".join(_amount(r, values[r]) for r in names) or empty


# -- the cluster -----------------------------------------------------------------------------------------------


def master_addresses(lc: LocalCluster) -> list[str]:
    """The FuxiMasters of the local cluster at ``lc``, from its state file."""
    addresses = [p.addresses[0] for p in lc.load().processes if p.role == FUXI_MASTER_ROLE and p.addresses]
    if not addresses:
        raise NotFoundError(
            f"the cluster at {lc.dir} runs no FuxiMaster",
            hint="start one with Fuxi: `feitian cluster up` (--fuxi-masters 2, the default, with --coord 3)",
        )
    return addresses


@contextlib.asynccontextmanager
async def cluster_sched(
    cluster_dir: str | None, identity: str | None, timeout_s: float = DEFAULT_TIMEOUT_S
) -> AsyncIterator[SchedClient]:
    """A :class:`SchedClient` of the local cluster at ``cluster_dir`` acting as ``identity`` (default admin)."""
    lc = LocalCluster(resolve_cluster_dir(cluster_dir))
    masters = master_addresses(lc)
    async with await lc.client(ClientConfig(name="feitian-sched", connect_timeout_s=0.5), identity=identity) as rpc:
        yield SchedClient(rpc, masters, timeout_s=timeout_s)


def _run(
    cluster_dir: str | None, identity: str | None, timeout_s: float, action: Callable[[SchedClient], Awaitable[T]]
) -> T:
    async def go() -> T:
        async with cluster_sched(cluster_dir, identity, timeout_s) as sched:
            return await action(sched)

    return run(go())


def _unknown_app(exc: NotFoundError, app_id: str) -> NotFoundError:
    return NotFoundError(exc.message, hint="`feitian sched apps --all` lists the applications", app=app_id)


async def _get(sched: SchedClient, app_id: str) -> AppInfo:
    try:
        return await sched.get(app_id)
    except NotFoundError as exc:
        raise _unknown_app(exc, app_id) from None


# -- printing --------------------------------------------------------------------------------------------------


def _json(value: Any) -> Any:
    return msgspec.to_builtins(value)


def _outcome(app: AppInfo) -> str:
    parts = []
    if app.exit_code is not None:
        parts.append(f"exit {app.exit_code}")
    if app.detail:
        parts.append(app.detail)
    return "; ".join(parts)


def _show_app(app: AppInfo) -> None:
    rows = [
        ("id", app.app_id),
        ("name", app.name),
        ("state", app.state.value),
        ("priority", app.priority),
        ("group", app.group),
        ("command", " ".join(app.command)),
        ("package", app.package or "-"),
        ("attempts", f"{app.attempts} of {app.max_attempts}"),
        ("master on", app.master_machine or "-"),
        ("grants", app.grants),
        ("outstanding", app.outstanding),
        ("exit code", "-" if app.exit_code is None else app.exit_code),
        ("detail", app.detail or "-"),
    ]
    for key, value in rows:
        click.echo(f"{key + ':':<13}{value}")
    if app.procs:
        click.echo("")
        table(
            ["PROCESS", "KIND", "MACHINE", "STATE", "EXIT", "DETAIL"],
            [
                [
                    p.proc_id,
                    p.kind.value,
                    p.machine,
                    p.state,
                    "-" if p.exit_code is None else p.exit_code,
                    p.detail or "-",
                ]
                for p in app.procs
            ],
        )


def _health(node: NodeInfo) -> str:
    if node.healthy:
        return "ok"
    return "unhealthy" + (f": {node.health_reason}" if node.health_reason else "")


def _pair(free: int, capacity: int, fmt: Callable[[int], str]) -> str:
    return f"{fmt(free)}/{fmt(capacity)}"


# -- commands --------------------------------------------------------------------------------------------------


@click.group()
def sched() -> None:
    """Fuxi, the resource manager: machines, applications and quota groups (docs/sched.md).

    \b
    feitian sched nodes                       the machines (Tubos) and what is free on them
    feitian sched submit hello -- python3 -c 'print(1)'
    feitian sched apps                        what runs or waits (--all: ended ones too)
    """


@sched.command()
@json_option
@_common
def nodes(as_json: bool, cluster_dir: str | None, identity: str | None, timeout_s: float) -> None:
    """The machines FuxiMaster knows: rack, free/total CPU (cores) and memory (GiB), health, isolation, processes
    running, and how long ago each machine's Tubo last reported.

    \b
    Example:
      feitian sched nodes --json
    """

    async def action(s: SchedClient) -> list[NodeInfo]:
        return await s.nodes()

    found = _run(cluster_dir, identity, timeout_s, action)
    if as_json:
        emit_json(_json(found))
        return
    table(
        ["MACHINE", "RACK", "CPU FREE/TOTAL", "MEMORY GiB", "HEALTH", "ISOLATION", "PROCS", "HEARTBEAT"],
        [
            [
                n.name,
                n.rack,
                _pair(n.free.get("cpu", 0), n.capacity.get("cpu", 0), _cores) + " cores",
                _pair(n.free.get("memory", 0), n.capacity.get("memory", 0), _gib),
                _health(n),
                n.isolation or "-",
                n.processes,
                f"{n.last_heartbeat_age_s:.1f}s ago",
            ]
            for n in found
        ],
    )


@sched.command()
@click.option("--all", "include_ended", is_flag=True, help="Also the applications that ended (as many as are kept).")
@json_option
@_common
def apps(include_ended: bool, as_json: bool, cluster_dir: str | None, identity: str | None, timeout_s: float) -> None:
    """The applications that wait or run (--all: ended ones too): state, priority, quota group, master attempts,
    grants held, units still waited for, the machine of the master, and how it ended.

    \b
    Example:
      feitian sched apps --all
    """

    async def action(s: SchedClient) -> list[AppInfo]:
        return await s.apps(include_ended=include_ended)

    found = _run(cluster_dir, identity, timeout_s, action)
    if as_json:
        emit_json(_json(found))
        return
    table(
        ["ID", "NAME", "STATE", "PRIORITY", "GROUP", "ATTEMPTS", "GRANTS", "WAITING", "MASTER ON", "OUTCOME"],
        [
            [
                a.app_id,
                a.name,
                a.state.value,
                a.priority,
                a.group,
                f"{a.attempts}/{a.max_attempts}",
                a.grants,
                a.outstanding,
                a.master_machine or "-",
                _outcome(a) or "-",
            ]
            for a in found
        ],
    )


@sched.command()
@click.argument("app_id", metavar="ID")
@json_option
@_common
def app(app_id: str, as_json: bool, cluster_dir: str | None, identity: str | None, timeout_s: float) -> None:
    """One application (exit 4 if there is none of that ID).

    \b
    Example:
      feitian sched app app-0000000003
    """

    async def action(s: SchedClient) -> AppInfo:
        return await _get(s, app_id)

    found = _run(cluster_dir, identity, timeout_s, action)
    if as_json:
        emit_json(_json(found))
    else:
        _show_app(found)


def _chunk_json(chunk: LogChunk, app_id: str) -> dict[str, Any]:
    fields = _json(chunk)
    del fields["data"]
    return {"app_id": app_id, **fields, "text": chunk.data.decode("utf-8", "replace")}


def _write(data: bytes) -> None:
    sys.stdout.buffer.write(data)
    sys.stdout.buffer.flush()


async def _print_log(s: SchedClient, app_id: str, proc_id: str, stderr: bool, tail: int | None, as_json: bool) -> None:
    """Print the log (its last ``tail`` lines, or all that is kept) and return; see :func:`_follow_log`."""
    proc = await _find_proc(s, app_id, proc_id)
    if tail is not None:
        chunk = await s.tail(app_id, proc.proc_id, lines=tail, stderr=stderr)
        _emit_chunk(chunk, app_id, as_json)
        return
    chunk = await s.read_log(app_id, stderr=stderr, offset=0, proc=proc)
    if chunk.first > 0 and not as_json:
        note(f"({chunk.first} bytes dropped: Tubo keeps only the tail of a process's output)")
    _emit_chunk(chunk, app_id, as_json)
    while chunk.offset + len(chunk.data) < chunk.end:
        chunk = await s.read_log(app_id, stderr=stderr, offset=chunk.offset + len(chunk.data), proc=proc)
        _emit_chunk(chunk, app_id, as_json)


async def _follow_log(s: SchedClient, app_id: str, proc_id: str, stderr: bool, tail: int | None, as_json: bool) -> None:
    """Print the log (as :func:`_print_log`), then what is written, until the process has ended."""
    proc = await _find_proc(s, app_id, proc_id)
    if tail is not None:
        chunk = await s.tail(app_id, proc.proc_id, lines=tail, stderr=stderr)
    else:
        chunk = await s.read_log(app_id, stderr=stderr, offset=0, proc=proc)
        if chunk.first > 0 and not as_json:
            note(f"({chunk.first} bytes dropped: Tubo keeps only the tail of a process's output)")
    while True:
        if chunk.data:
            _emit_chunk(chunk, app_id, as_json)
        at = chunk.offset + len(chunk.data)
        if at >= chunk.end and not chunk.running:
            return
        if at >= chunk.end:
            await asyncio.sleep(FOLLOW_POLL_S)
        chunk = await s.read_log(app_id, stderr=stderr, offset=at, proc=proc)
        if chunk.offset > at and not as_json:
            note(f"({chunk.offset - at} bytes dropped: written faster than they were read)")


async def _find_proc(s: SchedClient, app_id: str, proc_id: str) -> ProcInfo:
    try:
        await s.get(app_id)
    except NotFoundError as exc:
        raise _unknown_app(exc, app_id) from None
    return await s.find_proc(app_id, proc_id)


def _emit_chunk(chunk: LogChunk, app_id: str, as_json: bool) -> None:
    if as_json:
        sys.stdout.write(msgspec.json.encode(_chunk_json(chunk, app_id)).decode() + "\n")
        sys.stdout.flush()
    else:
        _write(chunk.data)


@sched.command()
@click.argument("app_id", metavar="ID")
@click.argument("proc_id", metavar="[PROC]", required=False, default="")
@click.option("--stderr", is_flag=True, help="The process's stderr (default: its stdout).")
@click.option("--tail", type=click.IntRange(min=0), default=None, metavar="N", help="Only the last N lines.")
@click.option("--follow", "-f", is_flag=True, help="Then print what it writes, until it ends (Ctrl-C stops).")
@json_option
@_common
def logs(
    app_id: str,
    proc_id: str,
    stderr: bool,
    tail: int | None,
    follow: bool,
    as_json: bool,
    cluster_dir: str | None,
    identity: str | None,
    timeout_s: float,
) -> None:
    """A process's output (stdout, or --stderr), read from the Tubo of its machine: PROC (a process ID as
    `feitian sched app ID` lists them), or without PROC the application master (its latest attempt). A running
    process's log, and an ended one's for a while (a machine keeps the last 1,000 ended processes' logs, 1 GiB,
    7 days); only the last 8 MiB of each stream are kept. Needs read on fuxi:/apps.

    With --follow, prints what the process writes until it ends (then exit 0); Ctrl-C stops following (exit
    130). --json: one object per piece read (offsets, `text`). Unknown application or process, or a log no
    longer kept: exit 4.

    \b
    Examples:
      feitian sched logs app-0000000003 --tail 20
      feitian sched logs app-0000000003 app-0000000003.w.map-1 --stderr --follow
    """

    async def action(s: SchedClient) -> None:
        if follow:
            await _follow_log(s, app_id, proc_id, stderr, tail, as_json)
        else:
            await _print_log(s, app_id, proc_id, stderr, tail, as_json)

    try:
        _run(cluster_dir, identity, timeout_s, action)
    except KeyboardInterrupt:
        sys.exit(EXIT_INTERRUPTED)


@sched.command()
@click.argument("app_id", metavar="ID")
@json_option
@_common
def kill(app_id: str, as_json: bool, cluster_dir: str | None, identity: str | None, timeout_s: float) -> None:
    """Kill an application: its master and workers get SIGTERM, then SIGKILL after the grace period, and its
    grants go back. An application that has already ended stays as it ended (exit 0); unknown ID: exit 4.

    \b
    Example:
      feitian sched kill app-0000000003
    """

    async def action(s: SchedClient) -> AppInfo:
        try:
            return await s.kill(app_id)
        except NotFoundError as exc:
            raise _unknown_app(exc, app_id) from None

    found = _run(cluster_dir, identity, timeout_s, action)
    if as_json:
        emit_json(_json(found))
    else:
        click.echo(f"{found.app_id} {found.state.value}")


def _env(pairs: tuple[str, ...]) -> dict[str, str]:
    env: dict[str, str] = {}
    for pair in pairs:
        key, eq, value = pair.partition("=")
        if not eq or not key:
            raise InvalidArgumentError(f"--env {pair!r}: not NAME=VALUE", hint="e.g. --env LOG_LEVEL=debug")
        if key.startswith(TUBO_ENV_PREFIX):
            raise InvalidArgumentError(
                f"--env {key}: {TUBO_ENV_PREFIX}* variables are set by Tubo for each process",
                hint="the process reads FEITIAN_APP_ID, FEITIAN_WORK_DIR, FEITIAN_TUBO_SOCKET… from its environment",
            )
        env[key] = value
    return env


def _shape(cpu: int | None, memory: str | None) -> dict[str, int]:
    shape: dict[str, int] = {}
    if cpu is not None:
        shape["cpu"] = cpu
    if memory is not None:
        shape["memory"] = parse_size(memory, "--memory")
    if shape and "cpu" not in shape:
        shape["cpu"] = DEFAULT_MASTER_CPU
    if shape and "memory" not in shape:
        shape["memory"] = DEFAULT_MASTER_MEMORY
    return shape


def _progress(info: AppInfo) -> str:
    """``running, master on m3 (attempt 1 of 3)``; ``failed (exit 3; …)``."""
    if info.state in ENDED:
        outcome = _outcome(info)
        return info.state.value + (f" ({outcome})" if outcome else "")
    where = ""
    if info.master_machine:
        verb = "on" if info.state is AppState.RUNNING else "starting on"
        where = f", master {verb} {info.master_machine}"
    attempt = f" (attempt {info.attempts} of {info.max_attempts})" if info.attempts else ""
    return f"{info.state.value}{where}{attempt}"


async def _follow(s: SchedClient, info: AppInfo) -> AppInfo:
    """Until the application ends, each change of state (and of master attempt) said on stderr."""
    seen: tuple[AppState, int, str] | None = None
    while True:
        now = (info.state, info.attempts, info.master_machine)
        if now != seen:
            note(f"{info.app_id}: {_progress(info)}")
            seen = now
        if info.state in ENDED:
            return info
        await asyncio.sleep(WAIT_POLL_S)
        info = await _get(s, info.app_id)


@sched.command()
@click.argument("name")
@click.argument("command", nargs=-1, metavar="-- COMMAND [ARGS]...")
@click.option(
    "--package",
    default="",
    metavar="NAME[@VERSION]",
    help="Run COMMAND in this package (feitian pkg); NAME alone: its latest version now.",
)
@click.option("--priority", type=int, default=100, show_default=True, help="Smaller is higher: 0..1000.")
@click.option("--group", default="default", show_default=True, help="The quota group (feitian sched quota).")
@click.option(
    "--cpu",
    type=click.IntRange(min=1),
    default=None,
    metavar="MILLICORES",
    help="CPU of the application master, in millicores (1000 = one core) [default: 500].",
)
@click.option("--memory", default=None, metavar="SIZE", help="Memory of the application master, e.g. 512MiB [256MiB].")
@click.option("--env", "env_pairs", multiple=True, metavar="NAME=VALUE", help="An environment variable (repeatable).")
@click.option(
    "--max-attempts",
    type=click.IntRange(min=1),
    default=3,
    show_default=True,
    help="How many times the master is started before the application fails.",
)
@click.option(
    "--grant",
    "grant_texts",
    multiple=True,
    metavar="RESOURCE=RIGHTS",
    help="Give the application's processes this capability of yours, narrowed, under an identity of their own "
    "(secured clusters; repeatable), e.g. dfs:/jobs/wc/=read,create,write.",
)
@click.option(
    "--wait", is_flag=True, help="Wait until it ends, saying each change on stderr; exit 1 unless it succeeds."
)
@json_option
@_common
def submit(
    name: str,
    command: tuple[str, ...],
    package: str,
    priority: int,
    group: str,
    cpu: int | None,
    memory: str | None,
    env_pairs: tuple[str, ...],
    max_attempts: int,
    grant_texts: tuple[str, ...],
    wait: bool,
    as_json: bool,
    cluster_dir: str | None,
    identity: str | None,
    timeout_s: float,
) -> None:
    """Submit application NAME: FuxiMaster starts COMMAND as its application master on a machine with room for
    it (--cpu, --memory), and again after a failure, up to --max-attempts times. Prints its ID.

    Everything after `--` is the command, run as is (no shell) with a clean environment: PATH is
    /usr/local/bin:/usr/bin:/bin unless --env PATH=... gives one, so name other programs by their full path.

    With --wait: exit 0 when it succeeds, 1 when it fails or is killed (its exit code and detail in the
    `error:` line); Ctrl-C stops the waiting (exit 130), not the application.

    \b
    Examples:
      feitian sched submit hello -- /usr/bin/python3 -c 'print(1)'
      feitian sched submit wc --package wordcount@3 --priority 10 --cpu 1000 --memory 1GiB --wait -- python3 -m wc
      feitian sched submit wc --grant dfs:/jobs/wc/=read,create,write -- python3 -m wc

    With --grant, the application's processes get an identity of their own holding the named capabilities (each
    must be covered by one of yours that may be delegated); without, they reach no service of a secured cluster.
    """
    if not name or len(name.encode()) > MAX_NAME_BYTES or any(ord(c) < 32 or ord(c) == 127 for c in name):
        raise InvalidArgumentError(
            f"submit: application name {name!r}: 1 to {MAX_NAME_BYTES} bytes, no control characters",
            hint="e.g. wordcount",
        )
    if not command:
        raise InvalidArgumentError(
            "submit: no command given", hint="put the program and its arguments after `--`: submit NAME -- CMD ARGS"
        )
    if package:
        parse_spec(package)
    env = _env(env_pairs)
    shape = _shape(cpu, memory)
    grants = [parse_grant(text) for text in grant_texts]

    async def action(s: SchedClient) -> AppInfo:
        info = await s.submit(
            name,
            list(command),
            package=package,
            env=env,
            master_shape=shape,
            priority=priority,
            group=group,
            max_attempts=max_attempts,
            grants=grants,
        )
        if not wait:
            return info
        submitted.append(info.app_id)
        if not as_json:
            click.echo(info.app_id)  # at once: the user can kill it from another shell
        return await _follow(s, info)

    submitted: list[str] = []
    try:
        found = _run(cluster_dir, identity, timeout_s, action)
    except KeyboardInterrupt:
        if not submitted:
            raise
        click.echo("error: interrupted", err=True)
        click.echo(f"hint: {submitted[0]} goes on; `feitian sched kill {submitted[0]}` stops it", err=True)
        sys.exit(EXIT_INTERRUPTED)
    if as_json:
        emit_json(_json(found))
    elif not wait:
        click.echo(found.app_id)
    if wait and found.state is not AppState.SUCCEEDED:
        outcome = _outcome(found)
        raise FeitianError(
            f"application {found.app_id} ({found.name}) {found.state.value}" + (f": {outcome}" if outcome else ""),
            hint=f"`feitian sched app {found.app_id}` shows its record",
        )


@sched.group(invoke_without_command=True)
@json_option
@_common
@click.pass_context
def quota(ctx: click.Context, as_json: bool, cluster_dir: str | None, identity: str | None, timeout_s: float) -> None:
    """The quota groups: each group's limits, what its applications use, and what it may borrow of other groups'
    unused quota. `quota set` creates or changes one.

    \b
    Examples:
      feitian sched quota --json
      feitian sched quota set batch cpu=4000 memory=8GiB
    """
    if ctx.invoked_subcommand is not None:
        return

    async def action(s: SchedClient) -> list[QuotaInfo]:
        return await s.quota()

    _show_quota(_run(cluster_dir, identity, timeout_s, action), as_json)


def _show_quota(groups: list[QuotaInfo], as_json: bool) -> None:
    if as_json:
        emit_json(_json(groups))
        return
    table(
        ["GROUP", "QUOTA", "USAGE", "BORROWABLE"],
        [[g.group, _amounts(g.quota, "unlimited"), _amounts(g.usage), _amounts(g.borrowable)] for g in groups],
    )


def parse_quota(items: tuple[str, ...]) -> dict[str, int]:
    out: dict[str, int] = {}
    for item in items:
        name, eq, text = item.partition("=")
        if not eq or not name:
            raise InvalidArgumentError(
                f"quota set: {item!r} is not RESOURCE=AMOUNT", hint="e.g. cpu=4000 memory=8GiB (cpu in millicores)"
            )
        if name in out:
            raise InvalidArgumentError(f"quota set: {name} given twice")
        out[name] = parse_amount(name, text, f"quota set: {name}")
    return out


@quota.command(name="set")
@click.argument("group")
@click.argument("amounts", nargs=-1, metavar="RESOURCE=AMOUNT...")
@json_option
@_common
def set_quota(
    group: str,
    amounts: tuple[str, ...],
    as_json: bool,
    cluster_dir: str | None,
    identity: str | None,
    timeout_s: float,
) -> None:
    """Create quota group GROUP or replace its limits (needs admin on fuxi:/quota). Resources: cpu (millicores),
    memory and disk (sizes: 8GiB), net (Mbit/s); one not named is unlimited, so no amounts at all make a group
    without limits. Lowering a quota kills nothing: what is used beyond it becomes a loan, reclaimed when other
    groups need it. Prints every group, as `quota` does.

    \b
    Example:
      feitian sched quota set batch cpu=4000 memory=8GiB
    """
    if not _GROUP.fullmatch(group):
        raise InvalidArgumentError(
            f"quota set: group name {group!r}: letters, digits, '.', '_' and '-', starting with a letter or digit, "
            "at most 64",
            hint="e.g. batch or team-a",
        )
    limits = parse_quota(amounts)

    async def action(s: SchedClient) -> list[QuotaInfo]:
        return await s.set_quota(group, limits)

    _show_quota(_run(cluster_dir, identity, timeout_s, action), as_json)


@sched.command()
@json_option
@_common
def status(as_json: bool, cluster_dir: str | None, identity: str | None, timeout_s: float) -> None:
    """Which FuxiMaster leads, its epoch (the fencing token of its leadership), whether it is still recovering
    after a failover (rebuilding what runs from the Tubos' reports), and the machines, live applications and
    grants it knows. Exit 3 if none leads within --timeout.

    \b
    Example:
      feitian sched status --timeout 5
    """

    async def action(s: SchedClient) -> MasterStatusReply:
        return await s.status()

    found = _run(cluster_dir, identity, timeout_s, action)
    if as_json:
        emit_json(_json(found))
        return
    rows = [
        ("leader", f"{found.name} ({found.leader_address})"),
        ("epoch", found.epoch),
        ("recovering", "yes" if found.recovering else "no"),
        ("machines", found.machines),
        ("applications", found.apps),
        ("grants", found.grants),
    ]
    for key, value in rows:
        click.echo(f"{key + ':':<14}{value}")
