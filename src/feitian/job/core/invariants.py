"""Invariants of the JobMaster core, checked by the tests (and the simulation) after every step: :func:`check`
returns the problems found (empty when all hold). A problem is a bug.

1. No instance committed twice by one core; a done instance has its committed attempt, and only done ones do.
2. Attempts: never more started than the task's ``max_attempts``; at most two running at once, and then one of
   them is the instance's only backup; a running attempt's worker is busy with exactly that attempt.
3. Inputs: an instance runs (or is runnable) only when its inputs are done (graph.py's rules; while a restored
   core is still collecting reports, before ``start``, adopted attempts are exempt).
4. Blacklists: no attempt running on a machine was started after the machine was blacklisted for its task or
   the job.
5. Indexes agree: runnable queues hold exactly the runnable instances, the per-unit counts add up, ``done``
   counters match, idle and busy workers are where their phase says, outstanding demand is never negative.
6. The end: a job finished ok has every instance done; a failed one names a reason and nothing runs.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from feitian.job.core.state import Phase, WorkerPhase

if TYPE_CHECKING:
    from feitian.job.core.jobcore import JobCore
    from feitian.job.core.state import Instance, RunQueue, Task

__all__ = ["check"]


def check(core: JobCore) -> list[str]:
    problems: list[str] = []
    for (name, i), n in core.commits.items():
        if n > 1:
            problems.append(f"{name}[{i}]: committed {n} times")
    for task in core.tasks.values():
        _task(core, task, problems)
    _workers(core, problems)
    _end(core, problems)
    return problems


def _task(core: JobCore, task: Task, problems: list[str]) -> None:
    done = 0
    runnable: set[int] = set()
    per_unit: dict[str, int] = {}
    for inst in task.instances:
        where = f"{task.name}[{inst.index}]"
        done += inst.phase is Phase.DONE
        if (inst.phase is Phase.DONE) != (inst.committed is not None):
            problems.append(f"{where}: phase {inst.phase.value} but committed {inst.committed}")
        if inst.attempts_used > task.spec.max_attempts:
            problems.append(f"{where}: {inst.attempts_used} attempts started, max_attempts {task.spec.max_attempts}")
        _attempts(core, task, inst, where, problems)
        if inst.phase is Phase.RUNNABLE:
            runnable.add(inst.index)
            per_unit[inst.unit] = per_unit.get(inst.unit, 0) + 1
        if inst.phase in (Phase.RUNNABLE, Phase.RUNNING) and core.started and _missing(core, inst):
            problems.append(f"{where}: {inst.phase.value} before its inputs are done")
        if inst.phase is Phase.WAITING and core.started and inst.missing != _missing(core, inst):
            problems.append(f"{where}: counts {inst.missing} missing inputs, {_missing(core, inst)} are")
    if done != task.done:
        problems.append(f"task {task.name}: done counter {task.done}, {done} instances done")
    local = _live(task, task.local_queue, f"task {task.name}: the local queue", problems)
    free = _live(task, task.free_queue, f"task {task.name}: the free queue", problems)
    if local | free != runnable or local & free:
        problems.append(f"task {task.name}: runnable queues {sorted(local | free)[:10]} != {sorted(runnable)[:10]}")
    for name, by_key in (("host", task.by_host), ("rack", task.by_rack)):
        for key, queue in by_key.items():
            live = _live(task, queue, f"task {task.name}: the {name} queue of {key}", problems)
            if not live:
                problems.append(f"task {task.name}: the {name} queue of {key} is empty but kept")
    for inst in task.instances:
        if inst.phase is Phase.RUNNABLE:
            hosts = set(inst.hosts)
            for host in hosts:
                if host not in task.by_host:
                    problems.append(f"{task.name}[{inst.index}]: runnable but not in the queue of its host {host}")
            if (inst.index in local) != bool(hosts):
                problems.append(f"{task.name}[{inst.index}]: in the wrong runnable queue")
    counted = {unit: n for unit, n in task.unit_runnable.items() if n}
    if counted != per_unit:
        problems.append(f"task {task.name}: runnable per unit {counted} != {per_unit}")
    running = {i.index for i in task.instances if i.running}
    if running != set(task.running):
        problems.append(f"task {task.name}: running index {sorted(task.running)[:10]} != {sorted(running)[:10]}")
    for i in task.backup_wanted:
        if task.instances[i].phase is not Phase.RUNNING or task.instances[i].backup_started:
            problems.append(f"{task.name}[{i}]: wants a backup but is not a running instance without one")
    for unit, n in task.outstanding.items():
        if n < 0:
            problems.append(f"task {task.name}: unit {unit} outstanding {n} < 0")


def _live(task: Task, queue: RunQueue, where: str, problems: list[str]) -> set[int]:
    """The live entries of ``queue``; a problem when its live count disagrees or one is listed twice."""
    live = [inst.index for inst in queue.scan(task.instances)]
    if len(set(live)) != len(live) or len(live) != queue.live:
        problems.append(f"{where}: {len(live)} live entries ({len(set(live))} distinct), live count {queue.live}")
    return set(live)


def _attempts(core: JobCore, task: Task, inst: Instance, where: str, problems: list[str]) -> None:
    if len(inst.running) > 2:
        problems.append(f"{where}: {len(inst.running)} attempts running")
    backups = [a for a in inst.running if a.backup]
    if len(backups) > 1 or (backups and not inst.backup_started):
        problems.append(f"{where}: {len(backups)} backups running (backup_started {inst.backup_started})")
    if inst.running and inst.phase is not Phase.RUNNING:
        problems.append(f"{where}: attempts running but phase {inst.phase.value}")
    if inst.phase is Phase.RUNNING and not inst.running:
        problems.append(f"{where}: running without an attempt")
    if len({a.ref for a in inst.running}) != len(inst.running):
        problems.append(f"{where}: one attempt listed twice")
    for attempt in inst.running:
        worker = attempt.worker
        if core.workers.get(worker.worker_id) is not worker or worker.attempt is not attempt:
            problems.append(f"{where}: {attempt.ref} runs on worker {worker.worker_id}, which is not busy with it")
        elif worker.phase is not WorkerPhase.BUSY:
            problems.append(f"{where}: worker {worker.worker_id} of a running attempt is {worker.phase.value}")
        for key in ((task.name, attempt.machine), None):
            at = core.task_blacklisted_at.get(key) if key else core.job_blacklist.get(attempt.machine)
            if at is not None and attempt.start_step > at:
                problems.append(f"{where}: {attempt.ref} started on {attempt.machine} after it was blacklisted")


def _missing(core: JobCore, inst: Instance) -> int:
    missing = 0
    for edge in core.graph.upstream(inst.task.name):
        missing += core._edge_missing(edge, inst.index)
    return missing


def _workers(core: JobCore, problems: list[str]) -> None:
    for worker_id, worker in core.workers.items():
        task = worker.task
        if task.workers.get(worker_id) is not worker:
            problems.append(f"worker {worker_id}: not in its task's worker table")
        if (worker.phase is WorkerPhase.IDLE) != (worker_id in task.idle):
            problems.append(
                f"worker {worker_id}: phase {worker.phase.value} but idle index says {worker_id in task.idle}"
            )
        if worker.phase is WorkerPhase.BUSY:
            attempt = worker.attempt
            inst = task.instances[attempt.ref.index] if attempt is not None else None
            if attempt is None or inst is None or attempt not in inst.running:
                problems.append(f"worker {worker_id}: busy with an attempt its instance does not list")
    for task in core.tasks.values():
        for worker_id in task.workers.keys() - core.workers.keys():
            problems.append(f"task {task.name}: lists worker {worker_id}, which the job does not know")


def _end(core: JobCore, problems: list[str]) -> None:
    finished = core.finished
    if finished is None:
        return
    if finished.ok and any(t.done != t.spec.instances for t in core.tasks.values()):
        problems.append("the job finished ok with instances not done")
    if not finished.ok:
        if not finished.reason:
            problems.append("the job failed without a reason")
        if any(t.running for t in core.tasks.values()):
            problems.append("the job failed but attempts still run")
    if any(w.phase is not WorkerPhase.IDLE for w in core.workers.values()) or any(t.idle for t in core.tasks.values()):
        problems.append("the job ended but it still holds workers")
