"""A job's DAG as the pure job core sees it (FUXI-7): tasks with instance counts, edges with a pattern.

This is the contract between the job description (``feitian.job.spec``, which a user writes) and the pure
scheduling core (``feitian.job.core``, which runs it). The description is richer — code, operators, input files,
resources in the user's units — and the JobMaster turns it into a :class:`JobGraph` once the inputs are known
(an instance per input split needs Pangu's file list and chunk locations).

Dependencies follow the edge pattern:

* ``1:1`` — consumer instance *i* reads producer instance *i* only; it may start as soon as that one finished
  (the two tasks must have the same instance count);
* ``1:N`` (broadcast) — every consumer instance reads every producer instance;
* ``hash`` / ``range`` (M:N) — producer instances partition their output into as many partitions as the consumer
  has instances; consumer instance *j* reads partition *j* of every producer instance.

A consumer of a ``1:N``, ``hash`` or ``range`` edge starts when every producer instance has finished (the
output of a partitioned edge is complete only then).
"""

from __future__ import annotations

import enum
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field

__all__ = ["MAX_INSTANCES", "MAX_TASKS", "EdgeDef", "JobGraph", "Pattern", "TaskDef", "find_cycle"]

MAX_TASKS = 1_000  # tasks in one job
MAX_INSTANCES = 1_000_000  # instances of one task


class Pattern(enum.StrEnum):
    ONE_TO_ONE = "1:1"
    BROADCAST = "1:N"
    HASH = "hash"
    RANGE = "range"

    @property
    def partitioned(self) -> bool:
        return self in (Pattern.HASH, Pattern.RANGE)


@dataclass(frozen=True, slots=True)
class TaskDef:
    """One task (a vertex).

    ``resources`` is the shape of one worker slot (resource name -> amount in the sched core's units, e.g.
    ``{"cpu": 1000, "memory": 512 << 20}``). ``hosts`` is, per instance, the machines that hold most of its input,
    best first (empty: no preference); its length is 0 or ``instances``. ``max_attempts`` bounds how often one
    instance runs after failures; ``backups`` allows backup instances for slow ones (FUXI-10).
    """

    name: str
    instances: int
    resources: Mapping[str, int] = field(default_factory=dict)
    hosts: tuple[tuple[str, ...], ...] = ()
    max_attempts: int = 4
    backups: bool = True


@dataclass(frozen=True, slots=True)
class EdgeDef:
    src: str
    dst: str
    pattern: Pattern


class JobGraph:
    """Tasks and edges, checked: names unique, edges between known tasks, no cycle, ``1:1`` edges between tasks
    of equal instance counts, bounds kept. :meth:`problems` lists every problem; the constructor raises
    ``ValueError`` naming them all."""

    def __init__(self, tasks: Iterable[TaskDef], edges: Iterable[EdgeDef] = ()) -> None:
        self.tasks: dict[str, TaskDef] = {}
        duplicates: list[str] = []
        for task in tasks:
            if task.name in self.tasks:
                duplicates.append(task.name)
            self.tasks[task.name] = task
        self.edges: tuple[EdgeDef, ...] = tuple(edges)
        problems = [f"task {name!r} is defined twice" for name in duplicates] + self.problems()
        if problems:
            raise ValueError("; ".join(problems))
        self.order: tuple[str, ...] = self._topological_order()

    def problems(self) -> list[str]:
        out: list[str] = []
        if not self.tasks:
            out.append("a job needs at least one task")
        if len(self.tasks) > MAX_TASKS:
            out.append(f"{len(self.tasks)} tasks: at most {MAX_TASKS}")
        for task in self.tasks.values():
            if not 1 <= task.instances <= MAX_INSTANCES:
                out.append(f"task {task.name!r}: {task.instances} instances, must be 1..{MAX_INSTANCES}")
            if task.hosts and len(task.hosts) != task.instances:
                out.append(f"task {task.name!r}: hosts for {len(task.hosts)} instances, it has {task.instances}")
            if task.max_attempts < 1:
                out.append(f"task {task.name!r}: max_attempts must be at least 1")
        seen: set[tuple[str, str]] = set()
        for e in self.edges:
            for end in (e.src, e.dst):
                if end not in self.tasks:
                    out.append(f"edge {e.src} -> {e.dst}: unknown task {end!r}")
            if e.src == e.dst:
                out.append(f"edge {e.src} -> {e.dst}: a task cannot feed itself")
            if (e.src, e.dst) in seen:
                out.append(f"edge {e.src} -> {e.dst} is defined twice")
            seen.add((e.src, e.dst))
            if e.pattern is Pattern.ONE_TO_ONE and e.src in self.tasks and e.dst in self.tasks:
                a, b = self.tasks[e.src].instances, self.tasks[e.dst].instances
                if a != b:
                    out.append(f"edge {e.src} -> {e.dst} (1:1): {a} producer instances but {b} consumer instances")
        if not out:
            cycle = self._cycle()
            if cycle:
                out.append("cycle: " + " -> ".join(cycle))
        return out

    def upstream(self, task: str) -> tuple[EdgeDef, ...]:
        return tuple(e for e in self.edges if e.dst == task)

    def downstream(self, task: str) -> tuple[EdgeDef, ...]:
        return tuple(e for e in self.edges if e.src == task)

    def sources(self) -> tuple[str, ...]:
        """Tasks with no upstream edge (they read the job's inputs)."""
        fed = {e.dst for e in self.edges}
        return tuple(name for name in self.order if name not in fed)

    def _cycle(self) -> list[str]:
        return find_cycle(list(self.tasks), [(e.src, e.dst) for e in self.edges])

    def _topological_order(self) -> tuple[str, ...]:
        indegree = dict.fromkeys(self.tasks, 0)
        for e in self.edges:
            indegree[e.dst] += 1
        ready = [name for name in self.tasks if indegree[name] == 0]  # definition order among equals
        order: list[str] = []
        while ready:
            name = ready.pop(0)
            order.append(name)
            for e in self.edges:
                if e.src == name:
                    indegree[e.dst] -= 1
                    if indegree[e.dst] == 0:
                        ready.append(e.dst)
        return tuple(order)


def find_cycle(names: Sequence[str], edges: Iterable[tuple[str, str]]) -> list[str]:
    """A cycle among ``edges`` (pairs of ``names``) as the path that closes it (``[a, b, c, a]``), or []."""
    succ: dict[str, list[str]] = {name: [] for name in names}
    for src, dst in edges:
        succ[src].append(dst)
    colour = dict.fromkeys(names, 0)  # 0 new, 1 on the path, 2 done
    for start in names:
        if colour[start]:
            continue
        stack: list[tuple[str, int]] = [(start, 0)]
        path: list[str] = []
        while stack:
            node, i = stack.pop()
            if i == 0:
                colour[node] = 1
                path.append(node)
            if i < len(succ[node]):
                stack.append((node, i + 1))
                nxt = succ[node][i]
                if colour[nxt] == 1:
                    return [*path[path.index(nxt) :], nxt]
                if colour[nxt] == 0:
                    stack.append((nxt, 0))
            else:
                colour[node] = 2
                path.pop()
    return []
