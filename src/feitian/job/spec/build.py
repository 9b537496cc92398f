"""The Python API that builds a job description — the same :class:`JobSpec` a job file gives::

    job = (
        Job("wordcount")
        .defaults(memory="512MiB")
        .task("map", inputs=["/data/books/*.txt"], function="wordcount.tasks:map_words", package="wordcount@1")
        .task("reduce", instances=4, function="wordcount.tasks:sum_counts", package="wordcount@1",
              output="/results/wordcount")
        .pipe("map", "reduce", pattern="hash", sort=True)
    )
    job.validate()                   # ConfigError listing every problem
    job.to_yaml() / to_json() / to_dict()   # decode_job() of these gives job.spec again

Each call checks its own arguments against the format (types, bounds) at once, raising
``InvalidArgumentError`` naming the argument; what needs the whole job (names, pipes, cycles) is checked by
:meth:`Job.problems` / :meth:`Job.validate`.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, TypeVar

import msgspec

from feitian.errors import InvalidArgumentError
from feitian.job.spec.check import Exists, Problem, problems, validate
from feitian.job.spec.load import decode_job, job_to_dict, job_to_json, job_to_yaml, read_job
from feitian.job.spec.model import Defaults, JobSpec, KeySpec, PipeSpec, TaskSpec

__all__ = ["Job"]

T = TypeVar("T")


def _drop_none(values: Mapping[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in values.items() if v is not None}


def _as(type_: type[T], values: Any, what: str) -> T:
    try:
        return msgspec.convert(values, type_)
    except msgspec.ValidationError as exc:
        raise InvalidArgumentError(f"{what}: {str(exc).replace('$.', '')}") from None


def _resources(
    cpu: float | None,
    memory: str | int | None,
    disk: str | int | None,
    net: int | None,
    virtual: Mapping[str, int] | None,
) -> dict[str, Any] | None:
    values = _drop_none({"cpu": cpu, "memory": memory, "disk": disk, "net": net, "virtual": virtual})
    return values or None


class Job:
    """A job description under construction; every method returns the job, so calls chain."""

    def __init__(self, name: str, *, priority: int | None = None, group: str | None = None) -> None:
        self._head = _drop_none({"name": name, "priority": priority, "group": group})
        types = {f.name: f.type for f in msgspec.structs.fields(JobSpec)}
        for field, value in self._head.items():
            _as(types[field], value, f"job {field}")
        self._defaults: dict[str, Any] | None = None
        self._tasks: list[TaskSpec] = []
        self._pipes: list[PipeSpec] = []

    # -- building --------------------------------------------------------------------------------------------

    def defaults(
        self,
        *,
        cpu: float | None = None,
        memory: str | int | None = None,
        disk: str | int | None = None,
        net: int | None = None,
        virtual: Mapping[str, int] | None = None,
        mode: str | None = None,
        concurrency: int | None = None,
        max_attempts: int | None = None,
        backups: bool | None = None,
        split_size: str | int | None = None,
        replication: int | None = None,
        format: str | None = None,
    ) -> Job:
        """Job-level defaults for every task (and the record format of every pipe); a second call replaces the
        first."""
        workers = _drop_none({"mode": mode, "concurrency": concurrency}) or None
        values = _drop_none(
            {
                "resources": _resources(cpu, memory, disk, net, virtual),
                "workers": workers,
                "max_attempts": max_attempts,
                "backups": backups,
                "split_size": split_size,
                "replication": replication,
                "format": format,
            }
        )
        _as(Defaults, values, "defaults")
        self._defaults = values
        return self

    def task(
        self,
        name: str,
        *,
        instances: int | None = None,
        inputs: Sequence[str] | None = None,
        split_size: str | int | None = None,
        function: str | None = None,
        package: str | None = None,
        operator: str | None = None,
        args: Mapping[str, Any] | None = None,
        command: Sequence[str] | None = None,
        cpu: float | None = None,
        memory: str | int | None = None,
        disk: str | int | None = None,
        net: int | None = None,
        virtual: Mapping[str, int] | None = None,
        mode: str | None = None,
        concurrency: int | None = None,
        max_attempts: int | None = None,
        backups: bool | None = None,
        output: str | None = None,
        replication: int | None = None,
    ) -> Job:
        """Add a task: its count (``instances`` or ``inputs``), its code (``function`` [+ ``package``],
        ``operator`` [+ ``args``] or ``command``), its worker slot, worker mode, retries, backups and output."""
        if replication is not None and output is None:
            raise InvalidArgumentError(f"task {name!r}: replication is the output's: give output= too")
        if isinstance(command, str):
            raise InvalidArgumentError(
                f"task {name!r}: command must be a list of words, not a string", hint=f"e.g. {command.split()!r}"
            )
        if isinstance(inputs, str):
            inputs = [inputs]  # one path or glob
        values = _drop_none(
            {
                "name": name,
                "code": _drop_none(
                    {
                        "function": function,
                        "package": package,
                        "operator": operator,
                        "args": dict(args) if args is not None else None,
                        "command": list(command) if command is not None else None,
                    }
                ),
                "instances": instances,
                "inputs": list(inputs) if inputs is not None else None,
                "split_size": split_size,
                "resources": _resources(cpu, memory, disk, net, virtual),
                "workers": _drop_none({"mode": mode, "concurrency": concurrency}) or None,
                "max_attempts": max_attempts,
                "backups": backups,
                "output": _drop_none({"dir": output, "replication": replication}) or None,
            }
        )
        self._tasks.append(_as(TaskSpec, values, f"task {name!r}"))
        return self

    def pipe(
        self,
        src: str,
        dst: str,
        *,
        pattern: str = "1:1",
        sort: bool = False,
        key: KeySpec | Sequence[str] | str | None = None,
        format: str | None = None,
    ) -> Job:
        """Add a pipeline from task ``src`` to task ``dst``. ``key``: a :class:`KeySpec`, or column names (arrow
        records; a single name or a list)."""
        if isinstance(key, str):
            key_value: Any = {"columns": [key]}
        elif isinstance(key, KeySpec):
            key_value = msgspec.to_builtins(key)
        elif key is not None:
            key_value = {"columns": list(key)}
        else:
            key_value = None
        values = _drop_none(
            {"from": src, "to": dst, "pattern": pattern, "sort": sort, "key": key_value, "format": format}
        )
        self._pipes.append(_as(PipeSpec, values, f"pipe {src} -> {dst}"))
        return self

    # -- the description --------------------------------------------------------------------------------------

    @property
    def spec(self) -> JobSpec:
        """The description built so far (not yet checked as a whole: see :meth:`validate`)."""
        return JobSpec(
            name=self._head["name"],
            tasks=tuple(self._tasks),
            pipes=tuple(self._pipes),
            defaults=_as(Defaults, self._defaults, "defaults") if self._defaults is not None else None,
            priority=self._head.get("priority"),
            group=self._head.get("group"),
        )

    def problems(
        self,
        *,
        exists: Exists | None = None,
        capacities: Sequence[Mapping[str, int]] | None = None,
        pools: Mapping[str, int] | None = None,
    ) -> list[Problem]:
        return problems(self.spec, exists=exists, capacities=capacities, pools=pools)

    def validate(
        self,
        *,
        exists: Exists | None = None,
        capacities: Sequence[Mapping[str, int]] | None = None,
        pools: Mapping[str, int] | None = None,
    ) -> JobSpec:
        return validate(self.spec, exists=exists, capacities=capacities, pools=pools)

    def to_dict(self) -> dict[str, Any]:
        return job_to_dict(self.spec)

    def to_json(self) -> str:
        return job_to_json(self.spec)

    def to_yaml(self) -> str:
        return job_to_yaml(self.spec)

    @classmethod
    def from_spec(cls, spec: JobSpec) -> Job:
        """A builder holding ``spec`` (to add tasks or pipes to a loaded description)."""
        job = cls(spec.name, priority=spec.priority, group=spec.group)
        job._defaults = msgspec.to_builtins(spec.defaults) if spec.defaults is not None else None
        job._tasks = list(spec.tasks)
        job._pipes = list(spec.pipes)
        return job

    @classmethod
    def load(cls, path: str | Path) -> Job:
        """A job file (JSON or YAML) as a builder."""
        return cls.from_spec(read_job(path))

    @classmethod
    def loads(cls, text: str | bytes, *, source: str = "<job>") -> Job:
        return cls.from_spec(decode_job(text, source=source))
