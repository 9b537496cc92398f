"""Matching an idle worker with work (delay scheduling, FUXI-8) and judging slow instances (backups, FUXI-10).

Pure functions over a task's records; :class:`~feitian.job.core.jobcore.JobCore` calls them.

**Matching** an idle worker on machine *m*, in order: a runnable instance that prefers *m* (its ``hosts``); one
whose hosts share *m*'s rack, once it waited ``rack_wait_ns``; then the oldest of an instance without preference
and one with hosts that waited ``any_wait_ns``. An instance retried after failing on *m* skips *m* until it
waited ``retry_elsewhere_wait_ns``. Queues keep runnable order, so a scan stops at the first instance too young
for its level; it looks at most at ``max_dispatch_scan`` entries per queue. Runnable instances come before
backups; a backup goes to a worker on another machine than the attempt it backs up, or on the same machine once
it has waited ``any_wait_ns``.
"""

from __future__ import annotations

from feitian.job.core.policy import JobPolicy
from feitian.job.core.state import Instance, RunQueue, Task

__all__ = ["pick_backup", "pick_runnable", "slow_criteria"]


def _first(
    task: Task, queue: RunQueue | None, machine: str, now_ns: int, wait_ns: int, policy: JobPolicy
) -> Instance | None:
    if queue is None or not queue.live:
        return None
    for scanned, inst in enumerate(queue.scan(task.instances)):
        if scanned >= policy.max_dispatch_scan:
            return None
        waited = now_ns - inst.ready_ns
        if waited < wait_ns:
            return None  # later entries became runnable later still
        if machine in inst.failed_machines and waited < policy.retry_elsewhere_wait_ns:
            continue
        return inst
    return None


def pick_runnable(task: Task, machine: str, rack: str | None, now_ns: int, policy: JobPolicy) -> Instance | None:
    """The runnable instance of ``task`` a worker on ``machine`` should run now, if any (see the module doc)."""
    inst = _first(task, task.by_host.get(machine), machine, now_ns, 0, policy)
    if inst is not None:
        return inst
    if rack is not None:
        inst = _first(task, task.by_rack.get(rack), machine, now_ns, policy.rack_wait_ns, policy)
        if inst is not None:
            return inst
    relaxed = _first(task, task.local_queue, machine, now_ns, policy.any_wait_ns, policy)
    free = _first(task, task.free_queue, machine, now_ns, 0, policy)
    if relaxed is None or free is None:
        return relaxed or free
    return relaxed if (relaxed.ready_ns, relaxed.index) <= (free.ready_ns, free.index) else free


def pick_backup(task: Task, machine: str, now_ns: int, policy: JobPolicy) -> Instance | None:
    """A slow instance of ``task`` waiting for a backup that a worker on ``machine`` may run."""
    for scanned, (index, since_ns) in enumerate(task.backup_wanted.items()):
        if scanned >= policy.max_dispatch_scan:
            return None
        inst = task.instances[index]
        if all(a.machine != machine for a in inst.running) or now_ns - since_ns >= policy.any_wait_ns:
            return inst
    return None


def slow_criteria(task: Task, inst: Instance, now_ns: int, policy: JobPolicy) -> tuple[bool, bool, bool]:
    """The seed's three criteria for a backup of ``inst``'s running attempt: (ran longer than the average of the
    finished instances times ``backup_slow_factor``, processes slower than their average rate times
    ``backup_rate_factor``, enough of the task finished: ``backup_min_done_fraction``). All three must hold."""
    if not inst.running or task.done == 0:
        return (False, False, False)
    attempt = inst.running[0]
    elapsed = max(0, now_ns - attempt.started_ns)
    longer = elapsed > policy.backup_slow_factor * (task.done_duration_ns / task.done)
    rate = attempt.processed / elapsed if elapsed > 0 else 0.0
    slower = rate < policy.backup_rate_factor * (task.done_rate_sum / task.done)
    enough = task.done >= policy.backup_min_done_fraction * task.spec.instances
    return (longer, slower, enough)
