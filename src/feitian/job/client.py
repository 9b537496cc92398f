"""Submitting DAG jobs and following them (``feitian job …``; the Python API's handle).

A job is a Fuxi application whose master is the JobMaster (master.py). Submitting one

1. checks the description and that its inputs exist in Pangu (every problem at once);
2. writes it to ``<jobs root>/<job id>/job.json`` in Pangu (the job id: the job's name and 8 hex digits);
3. in a secured cluster, gives the job's processes exactly what they need of the submitter's rights
   (``--grant``, docs/sched.md "Applications' identities"): the job's own directory, reading its inputs and
   writing its outputs — nothing else;
4. submits the application (priority and quota group from the description) and records its id beside the job.

:meth:`JobClient.status` reads the JobMaster's live view (``status.json``) and the application's state.
"""

from __future__ import annotations

import secrets
import sys
from collections.abc import Callable, Sequence

import msgspec

from feitian.base.clock import Clock, MonotonicClock
from feitian.dfs import DfsClient
from feitian.errors import ConfigError, DeadlineExceededError, NotFoundError
from feitian.job.inputs import expand
from feitian.job.master import JobStatus
from feitian.job.spec.check import input_problems, problems
from feitian.job.spec.load import job_to_json
from feitian.job.spec.model import JobSpec
from feitian.rpc import Client
from feitian.sched import AppGrant, AppInfo, AppState, SchedClient

__all__ = ["DEFAULT_ROOT", "JobClient", "JobView", "job_grants"]

DEFAULT_ROOT = "/jobs"
MASTER_SHAPE = {"cpu": 500, "memory": 512 << 20}
ENDED = (AppState.SUCCEEDED, AppState.FAILED, AppState.KILLED)
GLOB_CHARS = frozenset("*?[")
DIR_RIGHTS = ("read", "list", "create", "write", "delete")


class JobView(msgspec.Struct, frozen=True, kw_only=True):
    """A job as ``feitian job status`` shows it: the JobMaster's view and its application's."""

    job: str
    root: str
    app_id: str
    app_state: str
    status: JobStatus | None = None  # None until the JobMaster wrote one

    @property
    def state(self) -> str:
        """running, succeeded, failed, killed, pending."""
        if self.app_state in ("killed", "failed"):
            return self.app_state
        if self.status is not None and self.status.state in ("succeeded", "failed"):
            return self.status.state
        if self.app_state == "succeeded":
            return "succeeded"
        return "pending" if self.status is None else "running"

    @property
    def ended(self) -> bool:
        return self.state in ("succeeded", "failed", "killed")


def _input_resource(pattern: str) -> str:
    """The Pangu resource an input pattern reads: its path up to the first segment with a glob."""
    segments = [s for s in pattern.split("/") if s]
    fixed: list[str] = []
    for segment in segments:
        if any(c in GLOB_CHARS for c in segment):
            return "dfs:/" + "/".join(fixed) + ("/" if fixed else "")
        fixed.append(segment)
    return "dfs:/" + "/".join(fixed)


def job_grants(spec: JobSpec, root: str) -> list[AppGrant]:
    """What a job's processes may do: everything in its own directory, read its inputs, write its outputs."""
    grants: list[AppGrant] = [(f"dfs:{root}/", DIR_RIGHTS)]
    for task in spec.tasks:
        for pattern in task.inputs or ():
            grants.append((_input_resource(pattern), ("read", "list")))
        if task.output is not None:
            grants.append((f"dfs:{task.output.dir.rstrip('/')}/", DIR_RIGHTS))
    unique: dict[str, AppGrant] = {}
    for resource, rights in grants:
        known = unique.get(resource)
        unique[resource] = (resource, tuple(sorted(set(rights) | set(known[1] if known else ()))))
    return list(unique.values())


class JobClient:
    """``sched`` submits the application; ``dfs`` (a :class:`feitian.dfs.DfsClient`) holds the jobs' directories."""

    def __init__(
        self,
        sched: SchedClient,
        dfs: DfsClient,
        *,
        root: str = DEFAULT_ROOT,
        python: str = sys.executable,
        clock: Clock | None = None,
    ) -> None:
        self.sched = sched
        self.dfs = dfs
        self.root = root.rstrip("/") or "/"
        self.python = python
        self.clock = clock or MonotonicClock()

    async def submit(self, spec: JobSpec) -> JobView:
        dfs = self.dfs
        found = problems(spec)

        async def exists(pattern: str) -> bool:  # a path or a glob: does it name any file?
            try:
                return bool(await expand(dfs, pattern))
            except NotFoundError:
                return False

        if not found:
            found = await input_problems(spec, exists)
        if found:
            count = f"{len(found)} problem{'s' if len(found) > 1 else ''}"
            raise ConfigError(f"job {spec.name}: {count}", problems=[str(p) for p in found])
        job_id = f"{spec.name}-{secrets.token_hex(4)}"
        root = f"{self.root}/{job_id}"
        await dfs.mkdir(root, parents=True)
        await dfs.write_file(f"{root}/job.json", job_to_json(spec).encode())
        rpc: Client = self.sched.rpc
        grants = job_grants(spec, root) if rpc.tls is not None else []
        info = await self.sched.submit(
            f"job {job_id}",
            [self.python, "-m", "feitian.job.master", root],
            priority=spec.priority if spec.priority is not None else 100,
            group=spec.group or "default",
            master_shape=dict(MASTER_SHAPE),
            max_attempts=4,
            grants=grants,
        )
        await dfs.write_file(f"{root}/app", info.app_id.encode())
        return JobView(job=job_id, root=root, app_id=info.app_id, app_state=info.state.value)

    async def status(self, job_id: str) -> JobView:
        dfs = self.dfs
        root = f"{self.root}/{job_id}"
        try:
            app_id = (await dfs.read(f"{root}/app")).decode().strip()
        except NotFoundError:
            raise NotFoundError(
                f"no job {job_id} under {self.root}", hint="`feitian job list` lists the jobs", job=job_id
            ) from None
        info: AppInfo = await self.sched.get(app_id)
        status = await self._status_file(root)
        return JobView(job=job_id, root=root, app_id=app_id, app_state=info.state.value, status=status)

    async def _status_file(self, root: str) -> JobStatus | None:
        """The JobMaster's status file (None before it wrote one). It is replaced by a rename whenever it changes;
        Pangu's read of a whole file is of one version (a replacement met half-way is read again)."""
        try:
            return msgspec.json.decode(await self.dfs.read(f"{root}/status.json"), type=JobStatus)
        except NotFoundError:
            return None

    async def list(self) -> list[JobView]:
        try:
            entries = await self.dfs.list(self.root)
        except NotFoundError:
            return []
        out = []
        for entry in sorted(entries, key=lambda e: e.name):
            try:
                out.append(await self.status(entry.name))
            except NotFoundError:
                continue  # being submitted, or not a job
        return out

    async def kill(self, job_id: str) -> JobView:
        view = await self.status(job_id)
        await self.sched.kill(view.app_id)
        return await self.status(job_id)

    async def wait(
        self,
        job_id: str,
        *,
        timeout_s: float | None = None,
        poll_s: float = 0.5,
        on_change: Callable[[JobView], None] | None = None,
    ) -> JobView:
        """Until the job ends (``on_change`` is called with each new view)."""
        deadline = None if timeout_s is None else self.clock.monotonic_ns() + int(timeout_s * 1e9)
        last: JobView | None = None
        while True:
            view = await self.status(job_id)
            if on_change is not None and view != last:
                on_change(view)
            last = view
            if view.ended:
                return view
            if deadline is not None and self.clock.monotonic_ns() > deadline:
                raise DeadlineExceededError(f"job {job_id} still {view.state} after {timeout_s}s")
            await self.clock.sleep(poll_s)


def task_lines(view: JobView) -> Sequence[str]:
    """The live view as text: a bar per task."""
    lines = []
    for t in view.status.tasks if view.status else []:
        width = 24
        filled = width * t.done // max(1, t.instances)
        bar = "#" * filled + "." * (width - filled)
        lines.append(
            f"  {t.task:<16} [{bar}] {t.done}/{t.instances} done, {t.running} running, "
            f"{t.failed} failed, {t.backups} backups"
        )
    return lines
