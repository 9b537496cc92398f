"""The durable log of one replica: the on-disk :class:`RaftStore` plus the in-memory view the core reads.

The core reads a :class:`~feitian.consensus.MemoryStorage`; this class keeps it equal to what is durable: a
Ready is written to the store and fsynced (on a worker thread, so the event loop keeps serving, or inline when
the caller has nothing else to do meanwhile), and only then
applied to the in-memory view. On open, the view is rebuilt from the store; a store with nothing in it is
bootstrapped with the founding membership.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import os
import time
from pathlib import Path

from feitian.consensus import ConfState, Entry, HardState, MemoryStorage, Ready, Snapshot, SnapshotMeta, bootstrap
from feitian.errors import FeitianError
from feitian.runtime.raft_store import RaftStore
from feitian.runtime.raft_store_snapshots import read_snapshot

# A write that takes longer than this (the disk is busy: another process's large writes, a snapshot of ours)
# sends the writes of the next OFFLOAD_FOR_S to the worker thread even when inline writes were asked for, so
# the event loop does not wait for a slow disk.
SLOW_FSYNC_S = 0.05
OFFLOAD_FOR_S = 5.0
# A Ready with more entries than this (a follower catching up) is written on the worker thread: encoding and
# writing megabytes would stall the event loop.
INLINE_MAX_ENTRIES = 256


class DurableLog:
    def __init__(self, store: RaftStore, memory: MemoryStorage) -> None:
        self.store = store
        self.memory = memory
        self._executor = concurrent.futures.ThreadPoolExecutor(1, thread_name_prefix="feitian-raft-log")
        self.fsyncs = 0
        self.slow_fsyncs = 0  # writes that took over SLOW_FSYNC_S
        self.entries_persisted = 0
        self.busy_io = False  # the owner writes something large meanwhile (a snapshot): no inline writes
        self.loaded_snapshot_data = b""  # the snapshot's data as opened: the owner restores it, then drops it
        self._offload_until = 0.0
        self.segment_size_bytes = 64 << 20

    @classmethod
    def open(
        cls, directory: str | os.PathLike[str], voters: tuple[int, ...], segment_size_bytes: int = 64 << 20
    ) -> DurableLog:
        """Open (or bootstrap) the store in ``directory``. Blocking: call from a thread or before serving."""
        store = RaftStore.open(directory, segment_size_bytes=segment_size_bytes)
        state = store.load()
        if state.snapshot is None and not state.entries and state.hard_state == HardState():
            snapshot, hard_state = bootstrap(voters)
            store.save(hard_state, [], snapshot)
            store.sync()
            state = store.load()
        memory = MemoryStorage()
        if state.snapshot is not None:
            memory.apply_snapshot(_without_data(state.snapshot))
        memory.append(state.entries)
        memory.set_hard_state(state.hard_state)
        log = cls(store, memory)
        log.segment_size_bytes = segment_size_bytes
        log.loaded_snapshot_data = state.snapshot.data if state.snapshot is not None else b""
        return log

    @property
    def snapshot(self) -> Snapshot:
        """The latest snapshot's meta, *without its data*: the data lives in the snapshot file only
        (:meth:`snapshot_data`), not in memory — a large state is not held twice."""
        return self.memory.snapshot()

    async def snapshot_data(self, meta: SnapshotMeta) -> bytes:
        """The data of the snapshot ``meta`` names, read from its file on a worker thread (b"" if there is no
        file: a snapshot without data). DataCorruptionError if the file is damaged."""
        path = self.store.snapshot_path(meta)

        def read() -> bytes:
            if not path.is_file():
                return b""
            return read_snapshot(path).data

        return await asyncio.get_running_loop().run_in_executor(None, read)

    def inline_ok(self) -> bool:
        """Whether a write may run on the event loop now: not while the disk is slow (an fsync took over
        SLOW_FSYNC_S within the last OFFLOAD_FOR_S) nor while a large write of this replica's is under way
        (``busy_io``: a snapshot being written) — an fsync queued behind it would stall the loop."""
        return not self.busy_io and time.perf_counter() >= self._offload_until

    async def persist(self, ready: Ready, *, inline: bool = False) -> None:
        """Make what ``ready`` asks durable, then show it to the core. ``inline``: write and fsync on this
        thread (blocking the event loop meanwhile) instead of the worker thread — never for a Ready carrying a
        snapshot, and not while the disk is slow (:meth:`inline_ok`)."""
        hard_state = ready.hard_state
        if ready.snapshot is None and not ready.entries:
            if hard_state is None:
                return
            previous = self.memory.hard_state
            if hard_state.term == previous.term and hard_state.vote == previous.vote:
                # Only the commit index moved: it need not be durable (it is learned again from the leader),
                # so it is written with the next fsync rather than paying for one now.
                self.store.save(hard_state, [])
                self.memory.set_hard_state(hard_state)
                return
        loop = asyncio.get_running_loop()
        if inline and ready.snapshot is None and len(ready.entries) <= INLINE_MAX_ENTRIES and self.inline_ok():
            self._write(hard_state, ready.entries, ready.snapshot)
        else:
            await loop.run_in_executor(self._executor, self._write, hard_state, ready.entries, ready.snapshot)
        if ready.snapshot is not None:
            self.memory.apply_snapshot(_without_data(ready.snapshot))
        if ready.entries:
            self.memory.append(ready.entries)
        if ready.hard_state is not None:
            self.memory.set_hard_state(ready.hard_state)

    def _write(self, hard_state: HardState | None, entries: tuple[Entry, ...], snapshot: Snapshot | None) -> None:
        started = time.perf_counter()
        self.store.save(hard_state, entries, snapshot)
        self.store.sync()
        took = time.perf_counter() - started
        if took > SLOW_FSYNC_S and snapshot is None:
            self._offload_until = started + took + OFFLOAD_FOR_S
            self.slow_fsyncs += 1
        self.fsyncs += 1
        self.entries_persisted += len(entries)

    async def compact(self, index: int, conf: ConfState, data: bytes, keep_entries: int) -> None:
        """Record the state machine's snapshot at applied ``index``; keep ``keep_entries`` before it in memory
        for followers that lag a little (older ones get the snapshot)."""
        meta = self.snapshot_meta(index, conf)
        loop = asyncio.get_running_loop()
        await loop.run_in_executor(self._executor, self.store.compact, Snapshot(meta=meta, data=data))
        self.memory.create_snapshot(index, conf, b"")
        self.memory.compact(max(self.memory.first_index(), index - keep_entries))

    def snapshot_meta(self, index: int, conf: ConfState) -> SnapshotMeta:
        """The meta of a snapshot of the state machine at applied ``index`` (held in the log)."""
        return SnapshotMeta(index=index, term=self.memory.term(index), conf=conf)

    @property
    def snapshot_dir(self) -> Path:
        return self.store.snapshot_dir

    async def compact_to_written(self, meta: SnapshotMeta, keep_entries: int) -> None:
        """As :meth:`compact`, for a snapshot whose file is written already (``write_snapshot`` into
        :attr:`snapshot_dir`, e.g. by a forked child) and was checked: only the log's record is written."""
        loop = asyncio.get_running_loop()
        await loop.run_in_executor(self._executor, self.store.compact_to_written, meta)
        if meta.index > self.memory.snapshot().meta.index:
            self.memory.create_snapshot(meta.index, meta.conf, b"")
        self.memory.compact(max(self.memory.first_index(), meta.index - keep_entries))

    async def reopen(self) -> None:
        """Close and reopen the store after a failed write (it continues from what is durable). The in-memory
        view already equals what is durable: it is only updated after a write succeeds."""
        loop = asyncio.get_running_loop()
        directory = self.store.directory

        def reopen() -> RaftStore:
            with contextlib.suppress(FeitianError, OSError):
                self.store.close()
            return RaftStore.open(directory, segment_size_bytes=self.segment_size_bytes)

        self.store = await loop.run_in_executor(self._executor, reopen)

    async def close(self) -> None:
        loop = asyncio.get_running_loop()
        await loop.run_in_executor(self._executor, self.store.close)
        self._executor.shutdown(wait=True)


def _without_data(snapshot: Snapshot) -> Snapshot:
    return Snapshot(meta=snapshot.meta) if snapshot.data else snapshot
