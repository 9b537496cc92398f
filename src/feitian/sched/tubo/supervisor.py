"""ProcessSupervisor: the processes Tubo started on this machine — start, stop, watch, forget, and re-adopt them
after Tubo restarts.

Layout under ``root``::

    LOCK                      one supervisor per root (runtime.files.DirLock)
    procs/<proc_id>/record    the spec, the shim's and worker's (pid, start time), stop orders, the final status:
                              rewritten atomically with fsync (runtime.files.atomic_write) at each change
    procs/<proc_id>/exit      written by the shim when the worker ends: the shell's wait status and a newline
    work/<proc_id>/           the working directory (0700): stdout.log, stderr.log, whatever the process writes
    logs/<proc_id>/           the tail of its output: rotated while it runs, kept after it is forgotten
                              (feitian.sched.tubo.logs, bounded per process and per machine)
    trash/                    work dirs of forgotten processes, deleted a bounded number of entries per poll

Every call is synchronous and short: nothing waits for a process to exit. Exits are found by :meth:`poll`
(one ``stat`` of the exit file per running process; the shims' liveness, a read of /proc, once a second).
"""

from __future__ import annotations

import contextlib
import os
import signal
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TypeGuard

import msgspec

from feitian.base.clock import Clock, MonotonicClock
from feitian.errors import (
    AlreadyExistsError,
    ConflictError,
    InvalidArgumentError,
    NotFoundError,
    OverloadedError,
    UnavailableError,
)
from feitian.runtime.files import DirLock, atomic_write, ensure_dir, os_error
from feitian.runtime.procs import ProcessRef, is_running, signal_process
from feitian.sched.tubo import cgroups as cg
from feitian.sched.tubo.launch import default_signal_prefix, resolve_command, spawn_shim, worker_env
from feitian.sched.tubo.logs import LogKeeper, LogLimits, LogRead, LogStream
from feitian.sched.tubo.procs import (
    ProcessSpec,
    ProcessStatus,
    ProcState,
    decode_wait_status,
    describe_end,
    validate_grace,
    validate_spec,
)
from feitian.sched.tubo.trash import Trash
from feitian.sched.tubo.uids import AppUids

__all__ = ["ProcessSupervisor"]

_NS = 1_000_000_000
LIVENESS_EVERY_NS = _NS  # how often poll() checks that shims are alive (a read of /proc each)
DEFAULT_MAX_PROCESSES = 1024
DEFAULT_MAX_ENDED = 1024
PREFIX_CHARS = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789._-/")


class _Record(msgspec.Struct):
    spec: ProcessSpec
    started_at_ns: int  # wall clock
    shim: ProcessRef | None = None
    worker: ProcessRef | None = None
    stop_at_ns: int = 0  # wall clock of the stop order; 0: none
    kill_at_ns: int = 0  # wall clock when the SIGKILL is due
    final: ProcessStatus | None = None
    uid: int = -1  # the application's uid when app_uids is configured; -1: Tubo's


@dataclass
class _Entry:
    record: _Record
    status: ProcessStatus
    kill_due_ns: int | None = None  # monotonic: when the SIGKILL of everything in its cgroup is due
    killing: bool = False  # SIGKILL sent; sent again each poll until it ends (a forking process adds pids)
    orphan: bool = False  # the shim died: the worker runs on, its exit status will not be known
    cleanup: bool = False  # ended: its cgroup is still to be removed / its shim reaped


class ProcessSupervisor:
    """Starts, isolates, watches, stops and re-adopts this machine's processes. ``isolation`` says how they are
    isolated: ``"cgroup-v1"``, or ``"none (<why>)"`` when cgroups cannot be used (then only ``RLIMIT_AS`` caps
    memory, and nothing caps CPU or pids; docs/sched.md)."""

    def __init__(
        self,
        root: Path,
        *,
        cgroup_prefix: str = "feitian/tubo",
        clock: Clock | None = None,
        max_processes: int = DEFAULT_MAX_PROCESSES,
        max_ended: int = DEFAULT_MAX_ENDED,
        use_cgroups: bool = True,
        app_uids: tuple[int, int] | None = None,
        log_limits: LogLimits | None = None,
    ) -> None:
        if not cgroup_prefix or not set(cgroup_prefix) <= PREFIX_CHARS or ".." in cgroup_prefix.split("/"):
            raise InvalidArgumentError(f"tubo: bad cgroup prefix {cgroup_prefix!r}", hint="use A-Z a-z 0-9 . _ - /")
        if max_processes < 1 or max_ended < 0:
            raise InvalidArgumentError(f"tubo: max_processes {max_processes} / max_ended {max_ended} out of range")
        self.app_uids = AppUids(app_uids) if app_uids else None
        self.root = Path(root)
        self.clock: Clock = clock or MonotonicClock()
        self.max_processes = max_processes
        self.max_ended = max_ended
        for sub in ("procs", "work", "trash"):
            ensure_dir(self.root / sub)
        self._lock = DirLock(self.root)
        found = cg.detect(cgroup_prefix.strip("/")) if use_cgroups else "disabled by configuration"
        self.cgroups: cg.CgroupV1 | None = found if isinstance(found, cg.CgroupV1) else None
        self.isolation = "cgroup-v1" if self.cgroups else f"none ({found})"
        self._signal_prefix = default_signal_prefix()
        self._entries: dict[str, _Entry] = {}
        self._recovered = False
        self._next_liveness_ns = 0
        self._trash = Trash(self.root / "trash")
        self.logs = LogKeeper(self.root, log_limits or LogLimits(), self._trash)
        self._strays: set[str] = set()  # cgroups under the prefix no record knows, being emptied and removed

    # -- paths
    def _proc_dir(self, proc_id: str) -> Path:
        return self.root / "procs" / proc_id

    def _work_dir(self, proc_id: str) -> Path:
        return self.root / "work" / proc_id

    def work_dir(self, proc_id: str) -> Path:
        """Where the process ``proc_id`` runs (created by :meth:`start`)."""
        return self._work_dir(proc_id)

    def _save(self, entry: _Entry) -> None:
        atomic_write(self._proc_dir(entry.record.spec.proc_id) / "record", msgspec.json.encode(entry.record))

    def _require_recovered(self) -> None:
        if not self._recovered:
            raise ConflictError("tubo: call recover() once before using the supervisor")

    # -- the API
    def recover(self) -> list[ProcessStatus]:
        """Load every record left by an earlier run on this root, re-adopt what still runs, take the exit status
        of what ended meanwhile, and sweep what no record knows (cgroups and work dirs). Returns every status."""
        self._entries = {}
        for proc_dir in sorted((self.root / "procs").iterdir()):
            entry = self._adopt(proc_dir)
            if entry is not None:
                self._entries[entry.record.spec.proc_id] = entry
        self._sweep_unknown()
        self.logs.load(set(self._entries), self.clock.wall_ns())
        self._recovered = True
        return self.list()

    def start(self, spec: ProcessSpec, files: Mapping[str, bytes] | None = None) -> ProcessStatus:
        """Start ``spec``'s process. ``files`` (paths relative to its working directory -> content) are written
        there first, mode 0600 in directories of mode 0700, owned by the process's uid: e.g. its identity."""
        self._require_recovered()
        validate_spec(spec)
        name = spec.proc_id
        if name in self._strays:
            raise UnavailableError(
                f"start {name}: the cgroup of an earlier process with this id is still being emptied",
                hint="try again in a moment",
                proc_id=name,
            )
        if name in self._entries:
            raise AlreadyExistsError(f"start {name}: a process with this id exists on this machine", proc_id=name)
        running = sum(1 for e in self._entries.values() if not e.status.state.ended)
        if running >= self.max_processes:
            raise OverloadedError(
                f"start {name}: this machine runs {running} processes, the most its Tubo allows",
                hint="raise max_processes or stop some",
                limit=self.max_processes,
            )
        if spec.package_dir and not os.path.isdir(spec.package_dir):
            raise InvalidArgumentError(
                f"start {name}: package dir {spec.package_dir} does not exist", proc_id=name, hint="unpack it first"
            )
        work_dir = self._work_dir(name)
        env = worker_env(spec, work_dir)
        command = resolve_command(spec, env["PATH"])
        proc_dir = self._proc_dir(name)
        for stale in (proc_dir, work_dir):  # left by a start that crashed, or a forget in progress
            if stale.exists():
                self._trash.put(stale)
        try:
            proc_dir.mkdir(mode=0o700)
            work_dir.mkdir(mode=0o700)
        except OSError as exc:
            raise os_error(exc, "mkdir", work_dir) from exc
        uid = self._uid_for(spec.app_id)
        if uid >= 0:
            try:
                os.chown(work_dir, uid, uid)
            except OSError as exc:
                raise os_error(exc, "chown", work_dir) from exc
        _write_files(work_dir, files or {}, uid)
        record = _Record(spec, self.clock.wall_ns(), uid=uid)
        entry = _Entry(record, self._running_status(record, "starting"))
        self._save(entry)  # first: a crash from here on leaves a record that recover() ends and cleans up
        try:
            if self.cgroups:
                self.cgroups.create(
                    name, cpu_millis=spec.cpu_millis, memory_bytes=spec.memory_bytes, max_pids=spec.max_pids + 1
                )
            shim, worker = spawn_shim(
                proc_id=name,
                argv=[
                    *(self.app_uids.prefix(uid) if self.app_uids else []),
                    *self._signal_prefix,
                    command,
                    *spec.argv[1:],
                ],
                env=env,
                work_dir=work_dir,
                exit_file=proc_dir / "exit",
                cgroup_procs=self.cgroups.procs_files(name) if self.cgroups else [],
                vmem_kib=0 if self.cgroups else spec.memory_bytes // 1024,
            )
        except BaseException:
            if self.cgroups:
                self.cgroups.kill_all(name)
                with contextlib.suppress(Exception):
                    self.cgroups.remove(name)
            self._trash.put(proc_dir)
            self._trash.put(work_dir)
            raise
        record.shim, record.worker = shim, worker
        entry.status = self._running_status(record, "")
        self._save(entry)
        self._entries[name] = entry
        self.logs.starting(name, spec.app_id)
        return entry.status

    def stop(self, proc_id: str, grace_s: float | None = None) -> None:
        """SIGTERM to the process group now; SIGKILL to everything in its cgroup when the grace period is over
        (``poll`` does it). Stopping an ended process does nothing; a second stop may shorten the grace."""
        self._require_recovered()
        entry = self._get(proc_id)
        if entry.status.state.ended:
            return
        grace = entry.record.spec.grace_s if grace_s is None else grace_s
        validate_grace(proc_id, grace)
        now_mono, now_wall = self.clock.monotonic_ns(), self.clock.wall_ns()
        due = now_mono + int(grace * _NS)
        if entry.kill_due_ns is not None and entry.kill_due_ns <= due:
            return
        entry.kill_due_ns = due
        record = entry.record
        record.stop_at_ns = record.stop_at_ns or now_wall
        record.kill_at_ns = now_wall + int(grace * _NS)
        self._save(entry)
        self._terminate(entry)
        if grace <= 0:
            self._kill(entry)

    def poll(self) -> list[ProcessStatus]:
        """What changed since the last poll: processes that ended, and SIGKILLs sent at the end of a grace."""
        self._require_recovered()
        now = self.clock.monotonic_ns()
        check_liveness = now >= self._next_liveness_ns
        if check_liveness:
            self._next_liveness_ns = now + LIVENESS_EVERY_NS
        changed: dict[str, ProcessStatus] = {}  # one status per process: its latest
        for entry in list(self._entries.values()):
            name = entry.record.spec.proc_id
            if entry.status.state.ended:
                if entry.cleanup:
                    self._clean(entry)
                continue
            if self._maybe_end(entry):
                changed[name] = entry.status
                continue
            if entry.kill_due_ns is not None and now >= entry.kill_due_ns:
                first = not entry.killing
                self._kill(entry)
                if first:
                    changed[name] = entry.status
            if check_liveness and self._check_lost(entry):
                changed[name] = entry.status
            if check_liveness and not entry.status.state.ended:
                self.logs.rotate(name, entry.record.spec.app_id, self._work_dir(name))
        if check_liveness:
            self.logs.retire(self.clock.wall_ns())
        self._retire_ended()
        if self._strays:
            self._remove_strays()
        self._trash.delete_some()
        return list(changed.values())

    def list(self) -> list[ProcessStatus]:
        return [e.status for e in self._entries.values()]

    def get(self, proc_id: str) -> ProcessStatus:
        return self._get(proc_id).status

    def usage(self, proc_id: str) -> cg.CgroupStats | None:
        """The cgroup's counters now (memory peak, OOM kills, CPU time, throttling); None without cgroups."""
        self._get(proc_id)
        return self.cgroups.stats(proc_id) if self.cgroups else None

    def read_log(self, proc_id: str, app_id: str, stream: LogStream, *, offset: int | None, length: int) -> LogRead:
        """Part of a process's output (``feitian.sched.tubo.logs``): of one that has a record here, or one
        forgotten whose log is still kept. NotFoundError if neither (or it is of another application)."""
        entry = self._entries.get(proc_id)
        if entry is not None and entry.record.spec.app_id != app_id:
            raise NotFoundError(f"no log of process {proc_id!r} is kept on this machine", proc_id=proc_id)
        return self.logs.read(
            proc_id,
            app_id,
            stream,
            work_dir=self._work_dir(proc_id) if entry is not None else None,
            running=entry is not None and not entry.status.state.ended,
            offset=offset,
            length=length,
        )

    def forget(self, proc_id: str) -> None:
        """Drop an ended process's record; its work dir goes to the trash (deleted over the next polls)."""
        self._require_recovered()
        entry = self._get(proc_id)
        if not entry.status.state.ended:
            raise ConflictError(f"forget {proc_id}: the process is still running; stop it first", proc_id=proc_id)
        self._clean(entry)
        if entry.cleanup and self.cgroups:  # its cgroup is not empty yet: poll() goes on emptying it
            self._strays.add(proc_id)
        del self._entries[proc_id]
        self.logs.keep(
            proc_id, entry.record.spec.app_id, self._work_dir(proc_id), entry.status.ended_at_ns, self.clock.wall_ns()
        )
        self._trash.put(self._work_dir(proc_id))
        self._trash.put(self._proc_dir(proc_id))

    def close(self) -> None:
        """Let go of the root (the processes run on; a new supervisor re-adopts them). The prefix's cgroup
        directories are removed when no process cgroup is left in them."""
        if self.cgroups:
            self.cgroups.remove_prefix()
        self._lock.release()

    # -- recovery
    def _adopt(self, proc_dir: Path) -> _Entry | None:
        name = proc_dir.name
        try:
            record = msgspec.json.decode((proc_dir / "record").read_bytes(), type=_Record)
        except (OSError, msgspec.ValidationError, msgspec.DecodeError):
            record = None
        if record is None or record.spec.proc_id != name:  # a start that crashed before its first record
            if self.cgroups:
                self.cgroups.kill_all(name)
                self.cgroups.remove(name)
            self._trash.put(proc_dir)
            return None
        entry = _Entry(record, record.final or self._running_status(record, "re-adopted after a Tubo restart"))
        if record.final is not None:
            entry.cleanup = True
            self._clean(entry)
            return entry
        if record.kill_at_ns:
            left_ns = max(0, record.kill_at_ns - self.clock.wall_ns())
            entry.kill_due_ns = self.clock.monotonic_ns() + left_ns
        if self._maybe_end(entry, ended_at_ns=_mtime_ns(proc_dir / "exit")):
            return entry
        if record.worker is None:
            if self.cgroups:
                self.cgroups.kill_all(name)
            self._finish(entry, None, None, lost="Tubo stopped while starting it")
            return entry
        self._check_lost(entry)
        return entry

    def _sweep_unknown(self) -> None:
        """Cgroups and work dirs that no record knows (a start that crashed at its first step): kill, remove."""
        if self.cgroups:
            for name in self.cgroups.children():
                if name not in self._entries:
                    self._strays.add(name)
            self._remove_strays()
        for work_dir in sorted((self.root / "work").iterdir()):
            if work_dir.name not in self._entries:
                self._trash.put(work_dir)

    def _remove_strays(self) -> None:
        """Kill what is in cgroups no record knows and remove them; one still busy is tried again next poll."""
        assert self.cgroups is not None
        for name in sorted(self._strays):
            if name in self._entries:  # a process started under that name meanwhile owns it now
                self._strays.discard(name)
                continue
            self.cgroups.kill_all(name)
            if self.cgroups.remove(name):
                self._strays.discard(name)

    # -- internals
    def _uid_for(self, app_id: str) -> int:
        """The application's uid: the one its other records have, else the lowest free one of the range."""
        if self.app_uids is None:
            return -1
        taken: dict[int, str] = {e.record.uid: e.record.spec.app_id for e in self._entries.values()}
        return self.app_uids.assign(app_id, taken)

    def _get(self, proc_id: str) -> _Entry:
        entry = self._entries.get(proc_id)
        if entry is None:
            raise NotFoundError(f"tubo: no process {proc_id!r} on this machine", proc_id=proc_id)
        return entry

    def _running_status(self, record: _Record, reason: str) -> ProcessStatus:
        spec, worker = record.spec, record.worker
        return ProcessStatus(
            spec.proc_id,
            spec.app_id,
            ProcState.RUNNING,
            worker.pid if worker else 0,
            worker.start_time if worker else 0,
            detail=reason,
            work_dir=str(self._work_dir(spec.proc_id)),
            started_at_ns=record.started_at_ns,
        )

    def _terminate(self, entry: _Entry) -> None:
        shim, worker = entry.record.shim, entry.record.worker
        if _alive(shim):
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(shim.pid, signal.SIGTERM)  # the shim's group: the worker and its children (the
                return  # shim ignores SIGTERM)
        if _alive(worker):
            signal_process(worker, signal.SIGTERM)

    def _kill(self, entry: _Entry) -> None:
        """SIGKILL everything of the process but its shim: all of its cgroup, or without cgroups its process
        group and the worker."""
        name, shim, worker = entry.record.spec.proc_id, entry.record.shim, entry.record.worker
        spare = shim.pid if _alive(shim) else 0
        if self.cgroups:
            self.cgroups.kill_all(name, spare=spare)
        else:
            for pid in _group_members(spare):
                with contextlib.suppress(ProcessLookupError, PermissionError):
                    os.kill(pid, signal.SIGKILL)
        if _alive(worker):
            signal_process(worker, signal.SIGKILL)
        if not entry.killing:
            entry.killing = True
            entry.status = msgspec.structs.replace(entry.status, detail="SIGKILL sent: the grace period is over")

    def _read_exit(self, proc_id: str) -> str | None:
        try:
            text = (self._proc_dir(proc_id) / "exit").read_text()
        except FileNotFoundError:
            return None
        except OSError as exc:
            raise os_error(exc, "read", self._proc_dir(proc_id) / "exit") from exc
        return text if text.endswith("\n") and text.strip().isdigit() else None  # the shim is still writing

    def _maybe_end(self, entry: _Entry, ended_at_ns: int = 0) -> bool:
        text = self._read_exit(entry.record.spec.proc_id)
        if text is None:
            return False
        code, sig = decode_wait_status(text)
        self._finish(entry, code, sig, ended_at_ns=ended_at_ns)
        return True

    def _check_lost(self, entry: _Entry) -> bool:
        shim, worker = entry.record.shim, entry.record.worker
        if _alive(shim):
            return False
        if self._maybe_end(entry):  # the shim wrote the status and exited since the last look
            return True
        if _alive(worker):
            if not entry.orphan:
                entry.orphan = True
                entry.status = msgspec.structs.replace(entry.status, detail="its shim died: exit status unknown")
            return False
        self._finish(entry, None, None, lost="the process vanished and its shim wrote no exit status")
        return True

    def _finish(
        self, entry: _Entry, code: int | None, sig: int | None, *, lost: str = "", ended_at_ns: int = 0
    ) -> None:
        record = entry.record
        name = record.spec.proc_id
        stats = self.cgroups.stats(name) if self.cgroups else cg.CgroupStats()
        stopped = record.stop_at_ns != 0
        if lost:
            state, reason = ProcState.LOST, lost
        elif stats.oom_kills and (sig is not None or code != 0):
            state = ProcState.OOM_KILLED
            reason = (
                f"memory over its limit of {record.spec.memory_bytes} bytes: the kernel killed "
                f"{stats.oom_kills} process(es) in its cgroup; {describe_end(code, sig)}"
            )
        elif stopped:
            state = ProcState.KILLED
            if entry.killing and sig == signal.SIGKILL:
                reason = "stopped by order: SIGKILL at the end of the grace period"
            else:
                reason = f"stopped by order: {describe_end(code, sig)} after SIGTERM"
        elif code == 0:
            state, reason = ProcState.FINISHED, "exit code 0"
        else:
            state, reason = ProcState.FAILED, describe_end(code, sig)
        status = msgspec.structs.replace(
            entry.status,
            state=state,
            exit_code=code,
            signal=sig,
            detail=reason,
            ended_at_ns=ended_at_ns or self.clock.wall_ns(),
            memory_peak_bytes=stats.memory_peak_bytes,
            cpu_ns=stats.cpu_ns,
        )
        entry.status = status
        record.final = status
        self._save(entry)
        entry.cleanup = True
        self._clean(entry)

    def _clean(self, entry: _Entry) -> None:
        """Kill what is left of an ended process (children that outlived it), remove its cgroup, reap its
        shim; retried by each poll until done."""
        name, shim = entry.record.spec.proc_id, entry.record.shim
        if shim is not None:
            with contextlib.suppress(ChildProcessError, OSError):
                os.waitpid(shim.pid, os.WNOHANG)  # our child unless adopted after a restart
        if self.cgroups:
            alive_shim = shim.pid if _alive(shim) else 0
            self.cgroups.kill_all(name, spare=alive_shim)
            if not self.cgroups.remove(name):
                return
        entry.cleanup = False

    def _retire_ended(self) -> None:
        ended = [e for e in self._entries.values() if e.status.state.ended and not e.cleanup]
        excess = len(ended) - self.max_ended
        if excess > 0:
            for entry in sorted(ended, key=lambda e: e.status.ended_at_ns)[:excess]:
                self.forget(entry.record.spec.proc_id)


def _alive(ref: ProcessRef | None) -> TypeGuard[ProcessRef]:
    """Whether ``ref`` still names the process it was taken from. Without a start time (the process was gone
    before it could be read) it names nothing: its pid may belong to another program by now."""
    return ref is not None and ref.start_time != 0 and is_running(ref)


def _group_members(pgid: int) -> list[int]:
    """Processes in process group ``pgid`` other than its leader (a scan of /proc, used without cgroups)."""
    if pgid <= 0:
        return []
    members: list[int] = []
    for name in os.listdir("/proc"):
        if not name.isdigit() or int(name) == pgid:
            continue
        try:
            with open(f"/proc/{name}/stat", "rb") as f:
                raw = f.read().decode("ascii", "replace")
        except OSError:
            continue
        fields = raw[raw.rindex(")") + 2 :].split()
        if int(fields[2]) == pgid:
            members.append(int(name))
    return members


def _mtime_ns(path: Path) -> int:
    try:
        return path.stat().st_mtime_ns
    except OSError:
        return 0


def _write_files(work_dir: Path, files: Mapping[str, bytes], uid: int) -> None:
    for rel, content in files.items():
        path = Path(rel)
        if path.is_absolute() or ".." in path.parts or not path.parts:
            raise InvalidArgumentError(f"start: file {rel!r} is not inside the working directory")
        target = work_dir / path
        try:
            for parent in reversed(target.relative_to(work_dir).parents[:-1]):
                directory = work_dir / parent
                if not directory.exists():
                    directory.mkdir(mode=0o700)
                    if uid >= 0:
                        os.chown(directory, uid, uid)
            fd = os.open(target, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o600)
            with os.fdopen(fd, "wb") as f:
                f.write(content)
                if uid >= 0:
                    os.fchown(f.fileno(), uid, uid)
        except OSError as exc:
            raise os_error(exc, "write", target) from exc
