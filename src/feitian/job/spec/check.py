"""Every problem of a job description at once, each with the path to it (``tasks[1].resources.memory``).

:func:`problems` checks a decoded :class:`~feitian.job.spec.model.JobSpec` — names, counts, resources, code
references, inputs and outputs, pipes and how their pattern fits (key, sort, counts), cycles — and, when the
caller gives them, whether each input exists (``exists``: a callable asking Pangu, or a fake in tests) and whether
some machine can hold each task's worker slot (``capacities``: the machines' capacities in Fuxi's units, and the
cluster's ``pools``). :func:`input_problems` is the same input check with an async ``exists`` (a
:class:`~feitian.dfs.DfsClient` is asyncio). :func:`validate` raises a ``ConfigError`` listing them all.
"""

from __future__ import annotations

import keyword
import re
from collections.abc import Awaitable, Callable, Iterator, Mapping, Sequence

import msgspec

from feitian.errors import ConfigError, InvalidArgumentError
from feitian.job.core import find_cycle
from feitian.job.spec.amounts import (
    GROUP,
    MAX_SPLIT_SIZE,
    MIN_SPLIT_SIZE,
    describe_shape,
    format_size,
    name_problem,
    parse_size,
    path_problem,
    resource_problems,
    shape_of,
)
from feitian.job.spec.model import (
    MAX_ARGS_BYTES,
    MAX_TASK_NAME_BYTES,
    Code,
    JobSpec,
    PipeSpec,
    TaskSpec,
    effective_format,
    effective_task,
)
from feitian.sched import parse_spec

__all__ = ["OPERATORS", "Problem", "input_problems", "instance_counts", "problems", "topological_order", "validate"]

# The built-in operators (issue 19: read text/CSV/Parquet splits, split/tokenize, partition, sort, combine,
# write); the JobMaster's TaskWorkers run them column-wise. A name not listed here is refused, so a typo is found
# before the job runs.
OPERATORS = (
    "read_text",
    "read_csv",
    "read_parquet",
    "tokenize",
    "hash_partition",
    "range_partition",
    "sort",
    "combine",
    "aggregate",
    "write_text",
    "write_csv",
    "write_parquet",
)

_DOTTED = re.compile(r"[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)*")

Exists = Callable[[str], bool]  # a Pangu path or glob -> does at least one file match it?


class Problem(msgspec.Struct, frozen=True):
    """One problem: where (``tasks[1].code.function``; ``""`` for the whole job) and what."""

    path: str
    message: str

    def __str__(self) -> str:
        return f"{self.path}: {self.message}" if self.path else self.message


def problems(
    job: JobSpec,
    *,
    exists: Exists | None = None,
    capacities: Sequence[Mapping[str, int]] | None = None,
    pools: Mapping[str, int] | None = None,
) -> list[Problem]:
    """Every problem of ``job``. ``exists`` (optional) is asked about each input path or glob; ``capacities``
    (optional; one mapping per machine, in Fuxi's units) and ``pools`` (cluster-wide virtual resources) say
    what the cluster has, so a task no machine could run is refused."""
    out: list[Problem] = []
    add = out.append
    bad = name_problem("job", job.name)
    if bad:
        add(Problem("name", bad))
    if job.group is not None and not GROUP.fullmatch(job.group):
        add(Problem("group", f"quota group {job.group!r}: letters, digits, '.', '_' and '-', at most 64"))
    if job.defaults is not None:
        d = job.defaults
        if d.resources is not None:
            out.extend(Problem(f"defaults.resources.{f}", m) for f, m in resource_problems(d.resources))
        if d.split_size is not None:
            out.extend(Problem("defaults.split_size", m) for m in _split_size_problems(d.split_size))
    seen: dict[str, int] = {}
    for i, task in enumerate(job.tasks):
        where = f"tasks[{i}]"
        if task.name in seen:
            add(Problem(f"{where}.name", f"task {task.name!r} is defined twice (also tasks[{seen[task.name]}])"))
        else:
            seen[task.name] = i
        out.extend(_task_problems(job, where, task, capacities, pools))
    out.extend(_pipe_problems(job, seen))
    if exists is not None:
        for where, pattern in _inputs(job):
            if not exists(pattern):
                add(Problem(where, f"no file in Pangu matches {pattern!r}"))
    return out


async def input_problems(job: JobSpec, exists: Callable[[str], Awaitable[bool]]) -> list[Problem]:
    """The inputs that do not exist, asked of an async ``exists`` (one call per input path or glob)."""
    return [
        Problem(where, f"no file in Pangu matches {pattern!r}")
        for where, pattern in _inputs(job)
        if not await exists(pattern)
    ]


def validate(
    job: JobSpec,
    *,
    exists: Exists | None = None,
    capacities: Sequence[Mapping[str, int]] | None = None,
    pools: Mapping[str, int] | None = None,
) -> JobSpec:
    """``job`` if it has no problem, else a ``ConfigError`` listing every one (``problems`` in its fields)."""
    found = problems(job, exists=exists, capacities=capacities, pools=pools)
    if found:
        raise ConfigError(
            f"job {job.name!r}: {len(found)} problem{'s' if len(found) > 1 else ''}", problems=[str(p) for p in found]
        )
    return job


def _inputs(job: JobSpec) -> Iterator[tuple[str, str]]:
    for i, task in enumerate(job.tasks):
        for j, pattern in enumerate(task.inputs or ()):
            if path_problem(pattern, glob=True) is None:
                yield f"tasks[{i}].inputs[{j}]", pattern


def _split_size_problems(value: str | int) -> list[str]:
    size = parse_size(value)
    if isinstance(size, str):
        return [size]
    if not MIN_SPLIT_SIZE <= size <= MAX_SPLIT_SIZE:
        return [f"{value!r}: a split size is {format_size(MIN_SPLIT_SIZE)}..{format_size(MAX_SPLIT_SIZE)}"]
    return []


def _task_problems(
    job: JobSpec,
    where: str,
    task: TaskSpec,
    capacities: Sequence[Mapping[str, int]] | None,
    pools: Mapping[str, int] | None,
) -> list[Problem]:
    out: list[Problem] = []
    add = out.append
    bad = name_problem("task", task.name, MAX_TASK_NAME_BYTES)
    if bad:
        add(Problem(f"{where}.name", bad))
    if task.instances is not None and task.inputs is not None:
        add(Problem(where, f"task {task.name!r} has both `instances` and `inputs`: its count is one or the other"))
    if task.inputs is not None and not task.inputs:
        add(Problem(f"{where}.inputs", "an empty list: name Pangu files or globs, or leave `inputs` out"))
    for j, pattern in enumerate(task.inputs or ()):
        bad = path_problem(pattern, glob=True)
        if bad:
            add(Problem(f"{where}.inputs[{j}]", bad))
    if task.split_size is not None:
        if task.inputs is None:
            add(Problem(f"{where}.split_size", "only a task with `inputs` is split"))
        out.extend(Problem(f"{where}.split_size", m) for m in _split_size_problems(task.split_size))
    if task.resources is not None:
        out.extend(Problem(f"{where}.resources.{f}", m) for f, m in resource_problems(task.resources))
    out.extend(_code_problems(f"{where}.code", task.code))
    if task.output is not None:
        bad = path_problem(task.output.dir, glob=False)
        if bad:
            add(Problem(f"{where}.output.dir", bad))
    if capacities is not None and not out:
        resources = effective_task(job, task).resources
        if resources is not None and not resource_problems(resources):
            bad = _capacity_problem(shape_of(resources), capacities, pools or {})
            if bad:
                add(Problem(f"{where}.resources", bad))
    return out


def _code_problems(where: str, code: Code) -> list[Problem]:
    out: list[Problem] = []
    add = out.append
    given = [f for f in ("function", "operator", "command") if getattr(code, f) is not None]
    if len(given) != 1:
        said = " and ".join(f"`{f}`" for f in given) if given else "none"
        add(Problem(where, f"give exactly one of `function`, `operator`, `command` (given: {said})"))
    if code.function is not None:
        module, colon, function = code.function.partition(":")
        parts = [*module.split("."), *function.split(".")]
        if not colon or not _DOTTED.fullmatch(module) or not _DOTTED.fullmatch(function):
            add(Problem(f"{where}.function", f"{code.function!r} is not `module:function` (e.g. wc.tasks:count)"))
        elif any(keyword.iskeyword(p) for p in parts):
            add(Problem(f"{where}.function", f"{code.function!r}: a Python keyword cannot name a module or function"))
    if code.operator is not None and code.operator not in OPERATORS:
        add(Problem(f"{where}.operator", f"unknown operator {code.operator!r}; built-in: {', '.join(OPERATORS)}"))
    if code.package is not None:
        if code.operator is not None:
            add(Problem(f"{where}.package", "a built-in operator comes from no package"))
        try:
            parse_spec(code.package)
        except InvalidArgumentError as exc:
            add(Problem(f"{where}.package", exc.message))
    if code.args is not None:
        if code.command is not None:
            add(Problem(f"{where}.args", "a command takes its arguments in `command` itself"))
        size = len(msgspec.json.encode(code.args))
        if size > MAX_ARGS_BYTES:
            add(Problem(f"{where}.args", f"{size} bytes as JSON: at most {MAX_ARGS_BYTES}"))
    if code.command is not None:
        if not code.command or not code.command[0]:
            add(Problem(f"{where}.command", "an empty command: give the program and its arguments, e.g. [wc, -l]"))
        for k, word in enumerate(code.command):
            if "\x00" in word:
                add(Problem(f"{where}.command[{k}]", "a NUL character cannot be in a command"))
    return out


def _capacity_problem(shape: dict[str, int], capacities: Sequence[Mapping[str, int]], pools: Mapping[str, int]) -> str:
    machine_need = {r: a for r, a in shape.items() if r not in pools}
    for name, amount in shape.items():
        if name in pools and amount > pools[name]:
            return f"{name} {amount}: the cluster's pool holds {pools[name]}"
    if not capacities:
        return "the cluster has no machine"
    if any(all(cap.get(r, 0) >= a for r, a in machine_need.items()) for cap in capacities):
        return ""
    largest = {r: max(cap.get(r, 0) for cap in capacities) for r in machine_need}
    short = {r: a for r, a in machine_need.items() if a > largest[r]}
    if short:
        have = describe_shape({r: largest[r] for r in short})
        return f"no machine has {describe_shape(short)} (the most any machine has: {have})"
    return f"no machine has all of {describe_shape(machine_need)} at once"


def _pipe_problems(job: JobSpec, tasks: dict[str, int]) -> list[Problem]:
    out: list[Problem] = []
    add = out.append
    seen: dict[tuple[str, str], int] = {}
    for i, pipe in enumerate(job.pipes):
        where = f"pipes[{i}]"
        for field, end in (("from", pipe.from_), ("to", pipe.to)):
            if end not in tasks:
                add(Problem(f"{where}.{field}", f"unknown task {end!r}" + _known(tasks)))
        if pipe.from_ == pipe.to:
            add(Problem(where, f"task {pipe.from_!r} cannot feed itself"))
        pair = (pipe.from_, pipe.to)
        if pair in seen:
            add(Problem(where, f"pipe {pipe.from_} -> {pipe.to} is defined twice (also pipes[{seen[pair]}])"))
        seen.setdefault(pair, i)
        out.extend(_fit_problems(job, where, pipe))
    usable = [i for i, p in enumerate(job.pipes) if p.from_ in tasks and p.to in tasks and p.from_ != p.to]
    cycle = _cycle(list(tasks), [job.pipes[i] for i in usable])
    if cycle:
        add(Problem("pipes", "cycle: " + " -> ".join(cycle)))
        return out
    counts = instance_counts(job)
    for i in usable:
        pipe = job.pipes[i]
        if pipe.pattern == "1:1":
            a, b = counts.get(pipe.from_), counts.get(pipe.to)
            if a is not None and b is not None and a != b:
                add(Problem(f"pipes[{i}]", f"1:1 from {pipe.from_!r} ({a} instances) to {pipe.to!r} ({b} instances)"))
    return out


def _known(tasks: dict[str, int]) -> str:
    names = list(tasks)
    return f" (tasks: {', '.join(names[:10])}{', ...' if len(names) > 10 else ''})" if names else ""


def _fit_problems(job: JobSpec, where: str, pipe: PipeSpec) -> list[Problem]:
    """How the pattern fits its key, its sort and its record format."""
    out: list[Problem] = []
    partitioned = pipe.pattern in ("hash", "range")
    arrow = effective_format(job, pipe) == "arrow"
    if pipe.sort and not partitioned:
        kind = "broadcast" if pipe.pattern == "1:N" else "1:1 pipe"
        out.append(Problem(f"{where}.sort", f"a {kind} has no partitions to sort: `sort` is for hash and range"))
    if pipe.key is not None and not partitioned and not pipe.sort:
        out.append(Problem(f"{where}.key", f"a {pipe.pattern} pipe does not partition: a key is for hash and range"))
    if pipe.pattern == "range" and pipe.key is None:
        out.append(
            Problem(
                where,
                "`range` needs a `key`: the order partitions split by "
                + ("(its `columns`)" if arrow else "(`key: {type: bytes}` for the records' keys as bytes)"),
            )
        )
    no_columns = pipe.key is None or pipe.key.columns is None
    if arrow and (partitioned or pipe.sort) and no_columns and (pipe.key is not None or pipe.pattern != "range"):
        out.append(Problem(f"{where}.key", f"{pipe.pattern} of arrow records needs the key's `columns`"))
    if pipe.key is not None:
        if arrow and (pipe.key.type is not None or pipe.key.prefix_bytes is not None):
            out.append(Problem(f"{where}.key", "`type` and `prefix_bytes` are for kv records; arrow keys are columns"))
        if not arrow and pipe.key.columns is not None:
            out.append(Problem(f"{where}.key.columns", "kv records have one key: `columns` are for arrow records"))
    return out


def _cycle(names: list[str], pipes: list[PipeSpec]) -> list[str]:
    return find_cycle(names, [(p.from_, p.to) for p in pipes])


def topological_order(job: JobSpec) -> list[str]:
    """Task names, producers before consumers (definition order among equals); of an acyclic job."""
    names = [t.name for t in job.tasks]
    indegree = dict.fromkeys(names, 0)
    succ: dict[str, list[str]] = {n: [] for n in names}
    for p in job.pipes:
        if p.from_ in indegree and p.to in indegree:
            indegree[p.to] += 1
            succ[p.from_].append(p.to)
    ready = [n for n in names if indegree[n] == 0]
    order: list[str] = []
    while ready:
        name = ready.pop(0)
        order.append(name)
        for nxt in succ[name]:
            indegree[nxt] -= 1
            if indegree[nxt] == 0:
                ready.append(nxt)
    return order


def instance_counts(job: JobSpec, splits: Mapping[str, int] | None = None) -> dict[str, int | None]:
    """Each task's instance count, as far as it is known: ``instances``; for a task with inputs, its number of
    splits when ``splits`` gives it (else unknown: None); for a task with neither, its first ``1:1``
    producer's count, or 1 when no ``1:1`` pipe feeds it. Of an acyclic job."""
    by_name = {t.name: t for t in job.tasks}
    counts: dict[str, int | None] = {}
    for name in topological_order(job):
        task = by_name[name]
        if task.instances is not None:
            counts[name] = task.instances
        elif task.inputs is not None:
            counts[name] = (splits or {}).get(name)
        else:
            feeders = [p.from_ for p in job.pipes if p.to == name and p.pattern == "1:1" and p.from_ in counts]
            counts[name] = counts[feeders[0]] if feeders else 1
    return counts
