"""The JobMaster core's policy knobs: delay scheduling, worker reuse, retries, backups (FUXI-10), blacklisting.

Every knob has a default that suits a small cluster; docs/jobs-core.md lists them. A bad policy is a
``ConfigError`` listing every problem.
"""

from __future__ import annotations

import msgspec

from feitian.errors import ConfigError

__all__ = ["DEFAULT_JOB_POLICY", "JobPolicy"]

_SECOND_NS = 1_000_000_000


class JobPolicy(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    # -- delay scheduling (FUXI-8): an instance with preferred hosts waits for a worker on one of them, then takes
    #    a worker on the same rack after rack_wait_ns, then any worker after any_wait_ns (both counted from the
    #    moment it became runnable).
    rack_wait_ns: int = 3 * _SECOND_NS
    any_wait_ns: int = 6 * _SECOND_NS
    # A retried instance avoids the machines it failed on until it has waited this long.
    retry_elsewhere_wait_ns: int = 10 * _SECOND_NS
    # -- workers: at most this many per task (held + asked for); an idle worker with nothing runnable for its task
    #    is kept this long for instances that may become runnable (reuse), then released.
    max_workers_per_task: int = 1_000
    worker_idle_keep_ns: int = 2 * _SECOND_NS
    # Worker demand is asked per (task, preferred machine): at most this many such units per task; instances
    # beyond them are asked for without preference.
    max_units_per_task: int = 64
    # Instances looked at per idle worker and queue when matching (failed-machine exclusions are skipped).
    max_dispatch_scan: int = 16
    # -- backups (FUXI-10): a running instance gets one backup attempt on another machine when (1) it has run
    #    longer than backup_slow_factor x the average duration of the task's finished instances, (2) its rate
    #    (processed / elapsed) is below backup_rate_factor x the average rate of the task's finished instances,
    #    and (3) at least backup_min_done_fraction of the task's instances are done.
    backup_slow_factor: float = 1.5
    backup_rate_factor: float = 1.0
    backup_min_done_fraction: float = 0.5
    backup_check_interval_ns: int = 1 * _SECOND_NS
    # -- blacklisting: a machine that failed this many attempts of one task gets no more instances of that task;
    #    a machine blacklisted for job_blacklist_tasks tasks gets none of the job (and is reported to FuxiMaster).
    task_blacklist_failures: int = 3
    job_blacklist_tasks: int = 2
    # A task whose workers were all on blacklisted machines this many times in a row fails the job (the cluster
    # has no machine left for it).
    max_blacklist_rejects: int = 64

    def problems(self) -> list[str]:
        out = []
        for name in ("rack_wait_ns", "any_wait_ns", "retry_elsewhere_wait_ns", "worker_idle_keep_ns"):
            if getattr(self, name) < 0:
                out.append(f"{name} must be >= 0")
        if self.any_wait_ns < self.rack_wait_ns:
            out.append("any_wait_ns must be >= rack_wait_ns")
        for name in (
            "max_workers_per_task",
            "max_units_per_task",
            "max_dispatch_scan",
            "backup_check_interval_ns",
            "task_blacklist_failures",
            "job_blacklist_tasks",
            "max_blacklist_rejects",
        ):
            if getattr(self, name) < 1:
                out.append(f"{name} must be >= 1")
        if self.backup_slow_factor < 0 or self.backup_rate_factor < 0:
            out.append("backup_slow_factor and backup_rate_factor must be >= 0")
        if not 0.0 <= self.backup_min_done_fraction <= 1.0:
            out.append("backup_min_done_fraction must be within 0..1")
        return out

    def validate(self) -> JobPolicy:
        problems = self.problems()
        if problems:
            raise ConfigError("invalid job policy", problems=problems)
        return self


DEFAULT_JOB_POLICY = JobPolicy()
