"""The job description's types (FUXI-7): what a job file holds, as msgspec Structs, with their bounds.

The Structs are the one definition of the format: :mod:`feitian.job.spec.load` decodes files into them,
:mod:`feitian.job.spec.build` builds them from Python, ``job.schema.json`` is generated from them and the bounds
written here as ``Meta`` constraints appear in it. Bounds that need more than a type or a number (names, sizes,
Pangu paths, code references, how a pattern fits its key) are checked by :mod:`feitian.job.spec.check`, which lists
every problem at once. Every optional field is ``None`` when not given (omitted again when written), so a
description loaded, written and loaded again is equal to the first; :func:`effective_task` fills in the job's
``defaults`` and the built-in ones.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal, TypeVar

import msgspec

from feitian.job.core import MAX_INSTANCES, MAX_TASKS

__all__ = [
    "BUILTIN_DEFAULTS",
    "MAX_ARGS_BYTES",
    "MAX_ARGV",
    "MAX_ARG_BYTES",
    "MAX_ATTEMPTS",
    "MAX_CONCURRENCY",
    "MAX_FILE_BYTES",
    "MAX_INPUTS",
    "MAX_INSTANCES",
    "MAX_JOB_NAME_BYTES",
    "MAX_KEY_COLUMNS",
    "MAX_PATH_BYTES",
    "MAX_PIPES",
    "MAX_REF_BYTES",
    "MAX_REPLICATION",
    "MAX_TASKS",
    "MAX_TASK_NAME_BYTES",
    "MAX_VIRTUAL",
    "Code",
    "Defaults",
    "Format",
    "JobSpec",
    "KeySpec",
    "Output",
    "PatternName",
    "PipeSpec",
    "Resources",
    "TaskSpec",
    "WorkerMode",
    "Workers",
    "effective_format",
    "effective_task",
    "normalized",
]

# -- bounds (docs/jobs.md, "Bounds") -----------------------------------------------------------------------------
MAX_FILE_BYTES = 1 << 20  # a job description file (JSON or YAML)
MAX_PIPES = 10_000  # pipelines (edges) of one job
MAX_JOB_NAME_BYTES = 128
MAX_TASK_NAME_BYTES = 64
MAX_INPUTS = 1_024  # input paths/globs of one task
MAX_PATH_BYTES = 4_096  # a Pangu path (Pangu's max_path_bytes)
MAX_REF_BYTES = 512  # a `module:function`, a package spec, an operator name
MAX_ARGV = 256  # words of a command
MAX_ARG_BYTES = 4_096  # one word of a command
MAX_ARGS_BYTES = 64 * 1024  # a code's `args`, encoded as JSON
MAX_VIRTUAL = 64  # virtual resources of one task (Fuxi's max_virtual_resources)
MAX_KEY_COLUMNS = 64
MAX_ATTEMPTS = 100
MAX_CONCURRENCY = 256  # instances one TaskWorker runs at once
MAX_REPLICATION = 16  # Pangu's max_replication
MAX_PRIORITY = 1_000  # Fuxi's max_priority (smaller is higher)
MAX_STRING = 4_096  # any other string (a size, a resource name, a key column)

PatternName = Literal["1:1", "1:N", "hash", "range"]
Format = Literal["kv", "arrow"]
WorkerMode = Literal["threads", "processes"]
KeyType = Literal["bytes", "int", "float", "text"]

Str = Annotated[str, msgspec.Meta(max_length=MAX_STRING)]
Size = Str | Annotated[int, msgspec.Meta(ge=1)]  # "512MiB", "1.5GiB", "4G" or a number of bytes
Path = Annotated[str, msgspec.Meta(min_length=1, max_length=MAX_PATH_BYTES)]
Ref = Annotated[str, msgspec.Meta(min_length=1, max_length=MAX_REF_BYTES)]
Arg = Annotated[str, msgspec.Meta(max_length=MAX_ARG_BYTES)]


class Resources(msgspec.Struct, frozen=True, forbid_unknown_fields=True, omit_defaults=True, kw_only=True):
    """What one instance's worker slot needs, in the user's units: ``cpu`` in cores (0.5 = half a core),
    ``memory`` and ``disk`` as sizes (``512MiB``, ``2GiB``, or bytes), ``net`` in Mbit/s, and virtual resources
    by name (counts). A field not given comes from the job's ``defaults``, then the built-in defaults."""

    cpu: Annotated[float, msgspec.Meta(gt=0, le=1_000)] | None = None
    memory: Size | None = None
    disk: Size | None = None
    net: Annotated[int, msgspec.Meta(ge=1, le=1_000_000)] | None = None
    virtual: Annotated[dict[Str, Annotated[int, msgspec.Meta(ge=1)]], msgspec.Meta(max_length=MAX_VIRTUAL)] | None = (
        None
    )


class Code(msgspec.Struct, frozen=True, forbid_unknown_fields=True, omit_defaults=True, kw_only=True):
    """What an instance runs — exactly one of:

    * ``function``: a Python ``module:function`` (``wordcount.tasks:count_words``), from ``package``
      (``NAME`` or ``NAME@VERSION``, an uploaded package: docs/pkg.md) or importable on the workers;
    * ``operator``: a built-in operator by name, with ``args``;
    * ``command``: an executable (argv, from ``package`` or the workers' PATH) that reads records on stdin and
      writes records on stdout, like Hadoop streaming.

    ``args`` (a JSON object) go to a function or an operator as keyword arguments.
    """

    function: Ref | None = None
    package: Ref | None = None
    operator: Ref | None = None
    args: dict[Str, Any] | None = None
    command: Annotated[tuple[Arg, ...], msgspec.Meta(max_length=MAX_ARGV)] | None = None


class Workers(msgspec.Struct, frozen=True, forbid_unknown_fields=True, omit_defaults=True, kw_only=True):
    """How a TaskWorker runs instances: in ``threads`` of one process or in ``processes`` it forks, at most
    ``concurrency`` at once."""

    mode: WorkerMode | None = None
    concurrency: Annotated[int, msgspec.Meta(ge=1, le=MAX_CONCURRENCY)] | None = None


class Output(msgspec.Struct, frozen=True, forbid_unknown_fields=True, omit_defaults=True, kw_only=True):
    """Where a task writes its result in Pangu: one file per instance under ``dir``, with ``replication``."""

    dir: Path
    replication: Annotated[int, msgspec.Meta(ge=1, le=MAX_REPLICATION)] | None = None


class TaskSpec(msgspec.Struct, frozen=True, forbid_unknown_fields=True, omit_defaults=True, kw_only=True):
    """One task (a vertex of the DAG): ``instances`` copies of its code, or one per split of its ``inputs``
    (Pangu paths or globs; a split is a file or a ``split_size`` byte range of one). Without either, a task fed
    by a ``1:1`` pipe has its producer's count, any other task one instance."""

    name: Annotated[str, msgspec.Meta(min_length=1, max_length=MAX_TASK_NAME_BYTES)]
    code: Code
    instances: Annotated[int, msgspec.Meta(ge=1, le=MAX_INSTANCES)] | None = None
    inputs: Annotated[tuple[Path, ...], msgspec.Meta(max_length=MAX_INPUTS)] | None = None
    split_size: Size | None = None
    resources: Resources | None = None
    workers: Workers | None = None
    max_attempts: Annotated[int, msgspec.Meta(ge=1, le=MAX_ATTEMPTS)] | None = None
    backups: bool | None = None
    output: Output | None = None


class KeySpec(msgspec.Struct, frozen=True, forbid_unknown_fields=True, omit_defaults=True, kw_only=True):
    """The key a pipe partitions and sorts by. ``arrow`` records: the key ``columns``. ``kv`` records: the
    record's key, compared as ``type`` (``bytes`` by default; ``int``/``float``: the key is a decimal number in
    text; ``text``: UTF-8), only its first ``prefix_bytes`` when given. ``descending`` reverses the order."""

    columns: Annotated[tuple[Str, ...], msgspec.Meta(min_length=1, max_length=MAX_KEY_COLUMNS)] | None = None
    type: KeyType | None = None
    prefix_bytes: Annotated[int, msgspec.Meta(ge=1, le=1 << 20)] | None = None
    descending: bool = False


class PipeSpec(msgspec.Struct, frozen=True, forbid_unknown_fields=True, omit_defaults=True, kw_only=True):
    """A pipeline (an edge): records from every instance of ``from`` to instances of ``to`` by ``pattern`` —
    ``1:1`` (instance i to instance i), ``1:N`` (broadcast: every consumer reads every producer), ``hash`` or
    ``range`` (M:N: each producer partitions by ``key`` into one partition per consumer instance), ``sort``
    within a partition; records as ``format`` (``kv``: bytes key/value pairs, ``arrow``: record batches)."""

    from_: Annotated[str, msgspec.Meta(min_length=1, max_length=MAX_TASK_NAME_BYTES)] = msgspec.field(name="from")
    to: Annotated[str, msgspec.Meta(min_length=1, max_length=MAX_TASK_NAME_BYTES)]
    pattern: PatternName = "1:1"
    sort: bool = False
    key: KeySpec | None = None
    format: Format | None = None


class Defaults(msgspec.Struct, frozen=True, forbid_unknown_fields=True, omit_defaults=True, kw_only=True):
    """Job-level defaults for the fields of every task (and the record format of every pipe)."""

    resources: Resources | None = None
    workers: Workers | None = None
    max_attempts: Annotated[int, msgspec.Meta(ge=1, le=MAX_ATTEMPTS)] | None = None
    backups: bool | None = None
    split_size: Size | None = None
    replication: Annotated[int, msgspec.Meta(ge=1, le=MAX_REPLICATION)] | None = None
    format: Format | None = None


class JobSpec(msgspec.Struct, frozen=True, forbid_unknown_fields=True, omit_defaults=True, kw_only=True):
    """A job description: its ``name``, ``tasks`` and ``pipes``, job-level ``defaults``, and the Fuxi
    ``priority`` (smaller is higher) and quota ``group`` it is submitted with."""

    name: Annotated[str, msgspec.Meta(min_length=1, max_length=MAX_JOB_NAME_BYTES)]
    tasks: Annotated[tuple[TaskSpec, ...], msgspec.Meta(min_length=1, max_length=MAX_TASKS)]
    pipes: Annotated[tuple[PipeSpec, ...], msgspec.Meta(max_length=MAX_PIPES)] = ()
    defaults: Defaults | None = None
    priority: Annotated[int, msgspec.Meta(ge=0, le=MAX_PRIORITY)] | None = None
    group: Annotated[str, msgspec.Meta(min_length=1, max_length=64)] | None = None


S = TypeVar("S", bound=msgspec.Struct)

# What a field is when neither the task nor the job's defaults give it (docs/jobs.md, "Defaults").
BUILTIN_DEFAULTS = Defaults(
    resources=Resources(cpu=1.0, memory="1GiB"),
    workers=Workers(mode="threads", concurrency=1),
    max_attempts=4,
    backups=True,
    split_size="64MiB",  # Pangu's chunk size: a split is then one chunk, read from one machine
    replication=3,  # Pangu's default replication
    format="kv",
)


def _merge(first: S | None, *rest: S | None) -> S | None:
    """Field by field: the first value given (not None) wins."""
    present = [s for s in (first, *rest) if s is not None]
    if not present:
        return None
    values: dict[str, Any] = {}
    for field in msgspec.structs.fields(present[0]):
        for s in present:
            value = getattr(s, field.name)
            if value is not None:
                values[field.name] = value
                break
    return msgspec.structs.replace(present[0], **values)


def effective_task(job: JobSpec, task: TaskSpec) -> TaskSpec:
    """``task`` with every optional field the job's defaults or the built-in defaults give filled in (the count
    and the inputs are left as they are: they are not defaults)."""
    d = job.defaults or Defaults()
    b = BUILTIN_DEFAULTS
    output = task.output
    if output is not None and output.replication is None:
        output = msgspec.structs.replace(output, replication=d.replication or b.replication)
    return msgspec.structs.replace(
        task,
        resources=_merge(task.resources, d.resources, b.resources),
        workers=_merge(task.workers, d.workers, b.workers),
        max_attempts=next(v for v in (task.max_attempts, d.max_attempts, b.max_attempts) if v is not None),
        backups=next(v for v in (task.backups, d.backups, b.backups) if v is not None),
        split_size=(task.split_size or d.split_size or b.split_size) if task.inputs is not None else None,
        output=output,
    )


def effective_format(job: JobSpec, pipe: PipeSpec) -> Format:
    return pipe.format or (job.defaults.format if job.defaults and job.defaults.format else None) or "kv"


def normalized(job: JobSpec, counts: dict[str, int | None] | None = None) -> JobSpec:
    """``job`` with every default applied: each task's fields (:func:`effective_task`) and, from ``counts``
    (:func:`~feitian.job.spec.check.instance_counts`), the count of tasks that give neither ``instances`` nor
    ``inputs``; each pipe's format. ``defaults`` is then left out: it says nothing more."""
    tasks = []
    for task in job.tasks:
        full = effective_task(job, task)
        count = (counts or {}).get(task.name)
        if full.instances is None and full.inputs is None and count is not None:
            full = msgspec.structs.replace(full, instances=count)
        tasks.append(full)
    pipes = tuple(msgspec.structs.replace(p, format=effective_format(job, p)) for p in job.pipes)
    return msgspec.structs.replace(job, tasks=tuple(tasks), pipes=pipes, defaults=None)
