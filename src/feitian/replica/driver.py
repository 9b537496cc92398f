"""The asyncio driver of one replica: it owns a consensus core and replicates a state machine (NUWA-1).

::

    replica = Replica(config, state_machine, client)
    replica.register(server)            # serves raft.Step in the "raft" lane
    await replica.start()               # opens (or bootstraps) the durable log, restores the state machine
    result = await replica.propose(b"command", timeout=5)   # NotLeaderError(leader_hint=address) elsewhere
    await replica.read_barrier()        # after this, local reads are linearizable (ReadIndex)

One task runs the Ready cycle (its order is :mod:`feitian.replica.cycle`, shared with the simulator): persist
(write + fdatasync on a worker thread; everything proposed meanwhile rides the next fsync, which is the group
commit), then send messages (a leader sends first and writes
meanwhile, so its fsync and the followers' overlap), apply committed entries, answer
proposers and waiting reads, and ``advance``. Inputs — proposals, reads, messages from peers, ticks — are
stepped into the core directly on the event-loop thread, which is the only thread that touches it.

A proposal succeeds when its entry applies with the term it was proposed in. If the replica loses leadership
while a proposal is uncommitted, the proposal fails with UnavailableError (``outcome="unknown"``: it may still
commit under the new leader).
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import os
import random
from collections.abc import Callable, Iterator
from typing import Any, Protocol, runtime_checkable

import msgspec

from feitian.base.clock import Clock, MonotonicClock
from feitian.base.units import SECOND_NS
from feitian.consensus import (
    Config,
    Entry,
    InstallSnapshot,
    Message,
    RawNode,
    Ready,
    Role,
    Snapshot,
    SnapshotMeta,
)
from feitian.errors import (
    DataCorruptionError,
    DeadlineExceededError,
    FeitianError,
    InternalError,
    InvalidArgumentError,
    NotLeaderError,
    UnavailableError,
)
from feitian.replica.cycle import CycleStep, ReadyCycle, apply_entry
from feitian.replica.cycle import StateMachine as StateMachine  # the protocol services implement, re-exported
from feitian.replica.log import DurableLog
from feitian.replica.snapshot_transfer import SnapshotChunk, SnapshotReceiver
from feitian.replica.transport import RAFT_RESOURCE, Step, Transport
from feitian.rpc import CallContext, Client, Server
from feitian.runtime.forked import can_fork, run_in_child
from feitian.runtime.periodic import PeriodicTask
from feitian.runtime.raft_store_snapshots import read_snapshot_meta, snapshot_name, write_snapshot
from feitian.security.core import Right, requires

log = logging.getLogger(__name__)


@runtime_checkable
class PreparedRestore(Protocol):
    """A state machine whose restore splits into a slow half that builds a new state without touching the live
    one (run on a worker thread, so the event loop keeps serving while a large snapshot is decoded) and a fast
    half that swaps it in."""

    def prepare_restore(self, data: bytes) -> Any: ...

    def install(self, prepared: Any) -> None: ...

    def release(self) -> Iterator[None]:
        """Drop the current state before a new one is prepared: it is about to be replaced, and holding both at
        once would double the memory of a large state. The replica refuses reads meanwhile (``installing``).
        Returns steps that free the old state a piece at a time; the driver runs one per turn of the loop."""
        ...


def _apply_failed(entry: Entry, exc: Exception) -> None:
    log.error("state machine failed applying entry %d", entry.index, exc_info=exc)


def _retrieve(future: asyncio.Future[Any]) -> None:
    """Mark a shared future's exception as seen: every waiter may have given up on it already."""
    if not future.cancelled():
        future.exception()


APPLY_SLICE = 512  # committed entries applied between two turns of the event loop

# The reason of a refusal by a replica whose own log cannot be written (``cause``: why, e.g. ``disk_full``). It
# is this replica's trouble, not the service's: another replica takes over as leader, so callers retry elsewhere.
LOG_NOT_WRITABLE = "log_not_writable"


class ReplicaConfig(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    id: int
    peers: dict[int, str]  # every voter's id -> Kuafu address (this replica's too)
    data_dir: str
    cluster: str = "local"
    # Where consensus traffic to a peer goes when it differs from ``peers`` (a fault-injecting proxy in tests,
    # feitian.testing.faultproxy); leader hints to clients still name ``peers``.
    peer_addresses: dict[int, str] = {}
    tick_ms: int = 50
    election_ticks: int = 20  # 1 s with tick_ms=50; randomized in [1x, 2x)
    heartbeat_ticks: int = 2
    snapshot_every_entries: int = 20_000
    # ... and only once the log written since the last snapshot is at least this fraction of that snapshot's size,
    # so the work of snapshots stays proportional to the writes (a 200 MB state is not re-encoded every 20,000
    # small writes). 0: by entries alone.
    snapshot_log_ratio: float = 0.25
    keep_entries_after_snapshot: int = 5_000
    max_uncommitted_bytes: int = 64 << 20
    segment_size_bytes: int = 64 << 20  # write-ahead log segment files (preallocated)
    # A follower writes and fsyncs its log on the event-loop thread: it has nothing to answer before the write
    # is durable, and the handoff to a worker thread costs more than it frees.
    follower_sync_inline: bool = True
    # The leader too, by default: its followers' acknowledgements rarely come back before its own (small) fsync
    # is done, and the handoff costs two thread switches per write. Off: the leader writes on a worker thread
    # and keeps taking acknowledgements and requests meanwhile (for disks whose fsync takes many milliseconds).
    leader_sync_inline: bool = True
    default_timeout_s: float = 10.0
    # Take snapshots in a forked child process (feitian.runtime.forked) so the event loop never stalls on a
    # large state; off (or where fork does not exist): on the event loop, the file written on a thread.
    snapshot_in_child: bool = True
    # A ReadIndex request unanswered this long is sent again (it is also sent again at every leadership change);
    # 0: half the shortest election timeout.
    read_retry_ms: int = 0

    def problems(self) -> list[str]:
        out = []
        if self.id not in self.peers:
            out.append(f"id {self.id} is not among peers {sorted(self.peers)}")
        if self.tick_ms < 1:
            out.append("tick_ms must be >= 1")
        if self.read_retry_ms < 0:
            out.append("read_retry_ms must be >= 0")
        if self.snapshot_every_entries < 1 or self.keep_entries_after_snapshot < 0:
            out.append("snapshot_every_entries must be >= 1 and keep_entries_after_snapshot >= 0")
        if not 0 <= self.snapshot_log_ratio <= 100:
            out.append("snapshot_log_ratio must be in 0..100")
        return out


class ReplicaStats(msgspec.Struct):
    role: str
    term: int
    leader_id: int
    commit_index: int
    applied_index: int
    fsyncs: int
    entries_persisted: int
    proposals: int
    snapshot_index: int = 0
    snapshots_installed: int = 0  # snapshots received from a leader (this replica had fallen behind)
    disk_error: str = ""  # why the log cannot be written right now ("" when it can)
    loop_errors: int = 0  # unexpected failures of the Ready loop (each logged, the Ready resumed)
    last_loop_error: str = ""
    snapshot_bytes: int = 0  # the last snapshot this replica took
    snapshot_seconds: float = 0.0  # and how long taking it took
    snapshots_sent: int = 0  # snapshots sent whole to followers that had fallen behind
    slow_fsyncs: int = 0  # log writes that took over 50 ms (the next 5 s of writes then leave the event loop)


class Replica:
    def __init__(
        self,
        config: ReplicaConfig,
        state_machine: StateMachine,
        client: Client,
        *,
        rng: random.Random | None = None,
        on_leader_change: Callable[[int], None] | None = None,
        clock: Clock | None = None,
    ) -> None:
        problems = config.problems()
        if problems:
            raise InvalidArgumentError("invalid replica config: " + "; ".join(problems))
        self.config = config
        self.sm = state_machine
        self.client = client
        self.rng = rng or random.Random()
        self.clock = clock or MonotonicClock()  # what the driver's loops read and wait on
        self.on_leader_change = on_leader_change
        self.log: DurableLog | None = None
        self.node: RawNode | None = None
        self.transport = Transport(
            config.cluster,
            {**config.peers, **config.peer_addresses},
            client,
            self._unreachable,
            self._snapshot_reported,
            self._snapshot_data,
        )
        self.snapshots = SnapshotReceiver(config.cluster, config.id, config.data_dir, self._snapshot_arrived)
        self._cycle: ReadyCycle | None = None  # the Ready being carried out (resumed after a failure)
        self._sm_index = 0  # the last index the state machine holds (applied entry or restored snapshot)
        self.loop_errors = 0
        self.last_loop_error = ""
        # True while a snapshot from the leader replaces the state machine's state (PreparedRestore): the old
        # state is released first, so the service must not read the state machine meanwhile.
        self.installing = False
        self.snapshot_bytes = 0  # size of the last snapshot taken here
        self.snapshot_seconds = 0.0  # how long taking it took
        # Each snapshot's thresholds are stretched by a random factor in [1, 1.5), drawn per replica and per
        # snapshot: replicas apply the same entries, and without it they would all snapshot at the same index.
        self._snapshot_stretch = 1.0
        self._log_bytes = 0  # bytes of the entries applied since the last snapshot began
        self._snapshot_task: asyncio.Task[None] | None = None
        self._snapshot_taken: SnapshotMeta | None = None  # written and checked; the log is compacted next
        self._wakeup = asyncio.Event()
        self._applying_ahead = False  # the leader applied its outstanding Ready first and is persisting it
        self._proposals: dict[int, tuple[int, asyncio.Future[Any]]] = {}  # index -> (term, future)
        self._batch: list[tuple[bytes, asyncio.Future[Any]]] = []  # proposals waiting for this loop step to end
        self._reads: dict[bytes, asyncio.Future[int]] = {}  # read context -> future of its read index
        self._read_waiters: list[tuple[int, asyncio.Future[None]]] = []  # (index, future) until applied
        self._read_ids = itertools.count(1)
        self._read_prefix = config.id.to_bytes(8, "big") + os.urandom(8)  # this incarnation's read contexts
        self._leadership_future: asyncio.Future[None] | None = None  # see _leadership_changed
        self._next_read: asyncio.Future[int] | None = None  # the ReadIndex round reads arriving now will share
        self._read_task: asyncio.Task[None] | None = None
        self._tasks: list[asyncio.Task[None]] = []
        self._ticker: PeriodicTask | None = None  # the consensus core's clock tick
        self._leader_id = 0
        self._role = Role.FOLLOWER
        self.proposal_count = 0
        self.snapshots_installed = 0
        self.disk_error: FeitianError | None = None  # set while the log cannot be written
        self._stopping = False

    # -- lifecycle ---------------------------------------------------------------------------------------------

    def register(self, server: Server) -> None:
        """Serve ``raft.Step`` (one-way, stepped into the core as each frame arrives) and ``raft.SnapshotChunk``;
        in a secured cluster only peers holding WRITE on ``raft:/`` may send them."""
        rule: Any = requires(Right.WRITE, RAFT_RESOURCE)
        server.add_sync_handler(Step, self._on_step, requires=rule)
        server.add_handler(SnapshotChunk, self.snapshots.handle, requires=rule)

    async def start(self) -> None:
        loop = asyncio.get_running_loop()
        voters = tuple(sorted(self.config.peers))
        self.log = await loop.run_in_executor(
            None, DurableLog.open, self.config.data_dir, voters, self.config.segment_size_bytes
        )
        snapshot = self.log.snapshot
        data, self.log.loaded_snapshot_data = self.log.loaded_snapshot_data, b""  # restored, then let go
        if data:
            self.sm.restore(data)
        self._sm_index = snapshot.meta.index
        self.snapshot_bytes = len(data)
        del data
        cfg = Config(
            id=self.config.id,
            election_tick=self.config.election_ticks,
            heartbeat_tick=self.config.heartbeat_ticks,
            max_uncommitted_size_bytes=self.config.max_uncommitted_bytes,
        )
        self.node = RawNode(cfg, self.log.memory, self.rng)
        self._tasks = [loop.create_task(self._run_ready())]
        self._ticker = PeriodicTask(
            f"replica {self.config.id} ticks",
            self._tick,
            self.config.tick_ms / 1000,
            clock=self.clock,
            delay_first=True,
        )
        self._ticker.start()

    async def stop(self) -> None:
        self._stopping = True
        if self._ticker is not None:
            await self._ticker.stop()
        tasks = [*self._tasks, *(t for t in (self._read_task, self._snapshot_task) if t is not None)]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        self.transport.close()
        self.snapshots.close()
        self._fail_pending(UnavailableError("replica stopping", outcome="unknown"))
        if self.log is not None:
            await self.log.close()

    # -- inputs ------------------------------------------------------------------------------------------------

    @property
    def core(self) -> RawNode:
        if self.node is None:
            raise UnavailableError("replica not started")
        return self.node

    @property
    def is_leader(self) -> bool:
        return self._role is Role.LEADER

    @property
    def leader_address(self) -> str | None:
        return self.config.peers.get(self._leader_id)

    def _not_leader(self, what: str) -> NotLeaderError:
        hint = self.leader_address or ""
        return NotLeaderError(f"{what}: replica {self.config.id} is not the leader", leader_hint=hint)

    async def propose(self, data: bytes, timeout: float | None = None) -> Any:
        """Replicate ``data`` and return the state machine's result of applying it."""
        node = self.core
        if node.role is not Role.LEADER:
            raise self._not_leader("propose")
        if self.disk_error is not None:
            raise UnavailableError(
                f"propose: replica {self.config.id} cannot write its log: {self.disk_error.message}",
                reason=LOG_NOT_WRITABLE,
                cause=self.disk_error.fields.get("reason", self.disk_error.code),
            )
        # Proposals made in the same event-loop step go to the core together: one AppendEntries per follower
        # for all of them, not one each.
        future: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        self._batch.append((data, future))
        if len(self._batch) == 1:
            asyncio.get_running_loop().call_soon(self._propose_batch)
        # The future is this caller's alone: awaited directly (a timeout cancels it, and a cancelled proposal is
        # skipped), so the caller resumes in the loop step after the entry is applied, not one later.
        wait = self.config.default_timeout_s if timeout is None else timeout
        try:
            async with asyncio.timeout(wait):
                return await future
        except TimeoutError:
            if future.done() and not future.cancelled():  # answered in the very step the timeout fired
                return future.result()
            if not future.cancelled():
                raise
            if self._leader_id == 0:
                raise UnavailableError(f"propose: no leader elected (replica {self.config.id})") from None
            raise DeadlineExceededError(f"propose: not committed within {wait}s") from None

    def _propose_batch(self) -> None:
        batch, self._batch = self._batch, []
        live = [(data, future) for data, future in batch if not future.done()]
        if not live:
            return
        try:
            proposals = self.core.propose_batch([data for data, _ in live])  # NotLeaderError / OverloadedError
        except FeitianError as exc:
            for _, future in live:
                future.set_exception(exc)
            return
        for proposal, (_, future) in zip(proposals, live, strict=True):
            self._proposals[proposal.index] = (proposal.term, future)
        self.proposal_count += len(live)
        self._wakeup.set()

    async def read_barrier(self, timeout: float | None = None) -> None:
        """Return once this replica has applied everything committed when the call began (ReadIndex): a local
        read after it is linearizable. Works on followers too (the leader confirms the index).

        Concurrent reads share ReadIndex rounds: a read joins the next round to *start* (never one already in
        flight, which may have begun before the read arrived), and one round runs at a time, so a burst of reads
        costs one heartbeat round instead of one each (etcd's read loop does the same)."""
        node = self.core
        if self._next_read is None:
            self._next_read = asyncio.get_running_loop().create_future()
            self._next_read.add_done_callback(_retrieve)
            if self._read_task is None or self._read_task.done():
                self._read_task = asyncio.get_running_loop().create_task(self._run_read_rounds())
        index: int = await self._bounded(self._next_read, timeout, "read")
        if node.applied_index >= index:
            return
        applied: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._read_waiters.append((index, applied))
        await self._bounded(applied, timeout, "read")

    async def _run_read_rounds(self) -> None:
        while (round_ := self._next_read) is not None:
            self._next_read = None  # reads arriving from now on wait for the round after this one
            try:
                round_.set_result(await self._read_index())
            except Exception as exc:  # every read of this round fails alike (their callers may retry)
                round_.set_exception(exc)

    async def _read_index(self) -> int:
        """One ReadIndex round, started now: the commit index a leader confirmed it held as leader.

        The request is sent again whenever leadership changes (a round sent to a leader that died or was paused
        is never answered) and every ``read_retry_s`` (a request or its reply may be lost with a connection), so
        a round waits for at most one election plus one heartbeat round. Any answer is good: each was confirmed
        by a quorum after the round started. Gives up after ``default_timeout_s``."""
        node = self.core
        loop = asyncio.get_running_loop()
        give_up_ns = self.clock.monotonic_ns() + int(self.config.default_timeout_s * SECOND_NS)
        # Unique across replicas and restarts: the leader never relies on it, but this replica matches the
        # answers it gets to its own rounds by it.
        context = self._read_prefix + next(self._read_ids).to_bytes(8, "big")
        future: asyncio.Future[int] = loop.create_future()
        self._reads[context] = future
        try:
            while not future.done():
                remaining = (give_up_ns - self.clock.monotonic_ns()) / SECOND_NS
                if remaining <= 0:
                    if self._leader_id == 0:
                        raise UnavailableError(f"read: no leader elected (replica {self.config.id})")
                    raise DeadlineExceededError(f"read: not confirmed within {self.config.default_timeout_s}s")
                changed = self._leadership_changed()
                try:
                    node.read_index(context)
                    self._wakeup.set()
                    wait = min(remaining, self.read_retry_s)
                except NotLeaderError:  # no leader known yet (an election, or this replica just started)
                    wait = remaining
                await asyncio.wait((future, changed), timeout=wait, return_when=asyncio.FIRST_COMPLETED)
            return future.result()
        finally:
            self._reads.pop(context, None)

    def _leadership_changed(self) -> asyncio.Future[None]:
        """A future resolved at the next change of leader or of this replica's role."""
        if self._leadership_future is None:
            self._leadership_future = asyncio.get_running_loop().create_future()
        return self._leadership_future

    @property
    def read_retry_s(self) -> float:
        """How long a ReadIndex request waits for its answer before it is sent again: ``read_retry_ms``, by
        default half an election timeout (a round normally completes in one round trip)."""
        if self.config.read_retry_ms > 0:
            return self.config.read_retry_ms / 1000
        return self.config.election_ticks * self.config.tick_ms / 2000

    async def _bounded(self, future: asyncio.Future[Any], timeout: float | None, what: str) -> Any:
        """Wait for ``future`` (possibly shared by several waiters: it is never cancelled here) for ``timeout``."""
        wait = self.config.default_timeout_s if timeout is None else timeout
        if not future.done():
            waiter = asyncio.get_running_loop().create_future()

            def release(_: object = None) -> None:
                if not waiter.done():
                    waiter.set_result(None)

            future.add_done_callback(release)
            expiry = asyncio.get_running_loop().call_later(wait, release)
            try:
                await waiter
            finally:
                expiry.cancel()
                future.remove_done_callback(release)
            if not future.done():
                if self._leader_id == 0:
                    raise UnavailableError(f"{what}: no leader elected (replica {self.config.id})")
                raise DeadlineExceededError(f"{what}: not committed within {wait}s")
        return future.result()

    def _on_step(self, ctx: CallContext, req: Step) -> None:
        if req.cluster != self.config.cluster:
            raise InvalidArgumentError(f"raft.Step for cluster {req.cluster!r} reached {self.config.cluster!r}")
        node = self.core
        for message in req.messages:
            node.step(message)
        if self._applying_ahead:
            taken = node.take_committed(APPLY_SLICE)  # bounded: this runs as the frame arrives, on the loop
            if taken:
                self._apply_entries(taken)
                self._serve_reads()
        self._wakeup.set()

    def _unreachable(self, peer_id: int) -> None:
        if self.node is not None:
            self.node.report_unreachable(peer_id)

    def _snapshot_reported(self, peer_id: int, failed: bool) -> None:
        if self.node is not None and not self._stopping:
            self.node.report_snapshot(peer_id, failed=failed)
            self._wakeup.set()

    async def _snapshot_data(self, meta: SnapshotMeta) -> bytes:
        """What a snapshot sent to a follower holds (the log keeps snapshots' data in their files only)."""
        if self.log is None:
            raise UnavailableError("replica not started")
        return await self.log.snapshot_data(meta)

    def _snapshot_arrived(self, message: InstallSnapshot) -> None:
        """A snapshot arrived whole (in chunks): step it in as if it had come as one message."""
        self.core.step(message)
        self._wakeup.set()

    async def _tick(self) -> None:
        self.core.tick()
        self._wakeup.set()

    # -- the Ready cycle ---------------------------------------------------------------------------------------

    async def _run_ready(self) -> None:
        """Carry out Readies until stopped. An unexpected exception never ends the loop silently: it is logged
        (the first few and then every hundredth), counted in ``Stats.loop_errors``, and the Ready under way is
        resumed where it stopped after a back-off (0.05 s doubling to 2 s). While a leader's loop keeps failing
        it sends no heartbeats, so the others elect a new leader."""
        delay = 0.0
        while True:
            await self._wakeup.wait()
            self._wakeup.clear()
            try:
                await self._drain_ready()
            except Exception as exc:
                self.loop_errors += 1
                self.last_loop_error = f"{type(exc).__name__}: {exc}"
                if self.loop_errors <= 3 or self.loop_errors % 100 == 0:
                    log.exception(
                        "replica %d: the Ready loop failed (%d so far); resuming", self.config.id, self.loop_errors
                    )
                delay = min(2.0, max(0.05, delay * 2))
                await self.clock.sleep(delay)  # back-off before resuming
                self._wakeup.set()
            else:
                delay = 0.0

    async def _drain_ready(self) -> None:
        node = self.core
        while True:
            if self._cycle is None:
                ready = node.ready()
                if ready is None:
                    if self._snapshot_taken is not None:  # taken in the background: record it now
                        await self._maybe_compact()
                    return
                assert self.log is not None
                self._cycle = ReadyCycle.plan(ready, self.log.memory.hard_state, node.role)
            await self._carry_out(self._cycle)
            self._cycle = None
            self._serve_reads()
            await self._maybe_compact()

    async def _carry_out(self, cycle: ReadyCycle) -> None:
        """One Ready, step by step in the order :class:`ReadyCycle` decides (a leader sends and applies while it
        writes); each step is marked done, so a failure resumes with the step that failed (and the state machine
        never applies an entry twice: ``_sm_index``). While a leader writes on a worker thread, acknowledgements
        that commit more are applied as they arrive (_on_step), so an answer never waits for its fsync."""
        node = self.core
        assert self.log is not None
        ready, steps = cycle.ready, cycle.steps
        while (at := cycle.position) < len(steps):  # next_step() and done(), inlined: this runs per Ready
            step = steps[at]
            if step is CycleStep.SEND:
                cycle.position = at + 1  # marked done first: a message is sent at most once
                self._send(ready.messages)
            elif step is CycleStep.APPLY:
                if ready.snapshot is not None and ready.snapshot.meta.index > self._sm_index:
                    await self._restore_snapshot(ready.snapshot)
                await self._apply(ready)
                cycle.position = at + 1
            elif step is CycleStep.PERSIST:
                inline = (
                    self.config.leader_sync_inline if node.role is Role.LEADER else self.config.follower_sync_inline
                )
                self._applying_ahead = cycle.ahead
                try:
                    await self.log.persist(ready, inline=inline)
                except FeitianError as exc:
                    await self._recover_persist(ready, exc)
                finally:
                    self._applying_ahead = False
                cycle.position = at + 1
            else:
                node.advance(ready)
                cycle.position = at + 1

    async def _recover_persist(self, ready: Ready, error: FeitianError) -> None:
        """Writing a Ready failed (a full disk, an I/O error). Refuse new proposals, fail those waiting, and retry
        the same Ready on a reopened store until it is durable; the core waits (no ``advance``) meanwhile, so
        nothing is acknowledged or sent that the disk does not hold. Peers elect another leader if need be."""
        assert self.log is not None
        self.disk_error = error
        log.error("replica %d: cannot persist the log: %s (retrying until it succeeds)", self.config.id, error.message)
        self._fail_pending(
            UnavailableError(
                f"replica {self.config.id}: log not writable: {error.message}",
                outcome="unknown",
                reason=LOG_NOT_WRITABLE,
                cause=error.fields.get("reason", error.code),
            )
        )
        delay = 0.1
        while True:
            await self.clock.sleep(delay)
            delay = min(2.0, delay * 2)
            try:
                await self.log.reopen()
                await self.log.persist(ready)
            except FeitianError as exc:
                self.disk_error = exc
                continue
            log.warning("replica %d: the log is writable again", self.config.id)
            self.disk_error = None
            return

    def _send(self, messages: tuple[Message, ...]) -> None:
        self.transport.send(messages)

    async def _restore_snapshot(self, snapshot: Snapshot) -> None:
        """Replace the state machine's state with a snapshot received from the leader (decoded on a worker thread
        when the state machine can: ``PreparedRestore``)."""
        if snapshot.data:
            if isinstance(self.sm, PreparedRestore):
                self.installing = True  # the state is gone until the new one is in: reads are refused
                for _ in self.sm.release():
                    await asyncio.sleep(0)  # the old state is freed a piece at a time, between turns of the loop
                loop = asyncio.get_running_loop()
                prepared = await loop.run_in_executor(None, self.sm.prepare_restore, snapshot.data)
                self.sm.install(prepared)
                self.installing = False
            else:
                self.sm.restore(snapshot.data)
        self._sm_index = snapshot.meta.index
        self.snapshots_installed += 1
        self.snapshot_bytes, self._log_bytes = len(snapshot.data), 0

    async def _apply(self, ready: Ready) -> None:
        if ready.snapshot is not None and ready.snapshot.meta.index > self._sm_index:
            raise InternalError(f"replica {self.config.id}: a snapshot to apply before it was restored")
        entries = ready.committed_entries
        # A long backlog (a follower catching up, a new leader) is applied a slice at a time, letting the event
        # loop run between slices: heartbeats and reads are answered meanwhile.
        for start in range(0, len(entries), APPLY_SLICE):
            if start:
                await asyncio.sleep(0)
            self._apply_entries(entries[start : start + APPLY_SLICE])
        for read_state in ready.read_states:
            future_read = self._reads.get(read_state.context)
            if future_read is not None and not future_read.done():
                future_read.set_result(read_state.index)
        if ready.soft_state is not None:  # after applying: entries committed in this Ready answer first
            changed = ready.soft_state.leader_id != self._leader_id
            was_leader = self._role is Role.LEADER
            self._leader_id = ready.soft_state.leader_id
            self._role = ready.soft_state.role
            if was_leader and self._role is not Role.LEADER:
                self._fail_pending(
                    UnavailableError(
                        "leadership lost before the proposal committed",
                        outcome="unknown",
                        leader_hint=self.leader_address or "",
                    )
                )
            waiting, self._leadership_future = self._leadership_future, None
            if waiting is not None and not waiting.done():
                waiting.set_result(None)
            if changed and self.on_leader_change is not None:
                self.on_leader_change(self._leader_id)

    def _apply_entries(self, entries: tuple[Entry, ...]) -> None:
        for entry in entries:
            if entry.index <= self._sm_index:
                continue  # applied already, before a failure interrupted this Ready
            self._sm_index = entry.index
            self._log_bytes += len(entry.data)
            result = apply_entry(self.sm, entry, _apply_failed)
            pending = self._proposals.pop(entry.index, None)
            if pending is not None:
                term, future = pending
                if future.done():
                    continue
                if term != entry.term:
                    future.set_exception(UnavailableError("proposal lost: a new leader overwrote it", outcome="lost"))
                elif isinstance(result, Exception):
                    future.set_exception(result)
                else:
                    future.set_result(result)

    def _serve_reads(self) -> None:
        if not self._read_waiters:
            return
        applied = self.core.applied_index
        still = []
        for index, future in self._read_waiters:
            if index <= applied:
                if not future.done():
                    future.set_result(None)
            else:
                still.append((index, future))
        self._read_waiters = still

    def _fail_pending(self, error: Exception) -> None:
        proposals, self._proposals = self._proposals, {}
        for _, future in proposals.values():
            if not future.done():
                future.set_exception(error)

    async def _maybe_compact(self) -> None:
        """Between Readies: record a snapshot taken in the background, or start one when due.

        A snapshot is due ``snapshot_every_entries`` entries after the last one, once the log since then holds at
        least ``snapshot_log_ratio`` times the last snapshot's bytes — both stretched by a random 0-50 % drawn per
        replica and per snapshot, so replicas (which apply the same entries) do not all snapshot at once: on a
        machine hosting several, their children would take every core together. The state machine is snapshotted
        in a forked child (``snapshot_in_child``, the default where fork exists) that writes the snapshot file
        while this process goes on; the file is read back and checked on a worker thread; only then, here, is the
        log compacted (one small record). Without fork the state machine is snapshotted here and the file written
        on a thread."""
        assert self.log is not None
        taken, self._snapshot_taken = self._snapshot_taken, None
        if taken is not None:
            try:
                await self.log.compact_to_written(taken, self.config.keep_entries_after_snapshot)
            except FeitianError as exc:
                log.error("replica %d: recording snapshot %d failed: %s", self.config.id, taken.index, exc.message)
        if self._snapshot_task is not None and not self._snapshot_task.done():
            return
        node = self.core
        applied = node.applied_index
        stretch = self._snapshot_stretch
        if applied - self.log.snapshot.meta.index < self.config.snapshot_every_entries * stretch:
            return
        if self._log_bytes < self.config.snapshot_log_ratio * self.snapshot_bytes * stretch:
            return
        self._log_bytes = 0
        self._snapshot_stretch = 1 + self.rng.random() / 2
        meta = self.log.snapshot_meta(applied, node.conf_state)
        self._snapshot_task = asyncio.get_running_loop().create_task(self._take_snapshot(meta))

    async def _take_snapshot(self, meta: SnapshotMeta) -> None:
        assert self.log is not None
        loop = asyncio.get_running_loop()
        started_ns = self.clock.monotonic_ns()
        directory = self.log.snapshot_dir
        self.log.busy_io = True  # writing a large file: the log's own writes go to its thread meanwhile
        try:
            if self.config.snapshot_in_child and can_fork():
                sm = self.sm

                def write() -> None:
                    write_snapshot(directory, Snapshot(meta=meta, data=sm.snapshot()))

                await run_in_child(write, f"replica {self.config.id}: snapshot at {meta.index}")
            else:
                data = self.sm.snapshot()  # on the event loop: the state must not change meanwhile
                await loop.run_in_executor(None, write_snapshot, directory, Snapshot(meta=meta, data=data))
            path = directory / snapshot_name(meta.term, meta.index)
            checked, size = await loop.run_in_executor(None, read_snapshot_meta, path)  # read back, checked
            if checked != meta:
                raise DataCorruptionError(f"replica {self.config.id}: {path} holds {checked}, not {meta}")
        except FeitianError as exc:  # e.g. a full disk: keep the longer log, try again at the next threshold
            log.error("replica %d: snapshot at %d failed: %s", self.config.id, meta.index, exc.message)
            return
        finally:
            self.log.busy_io = False
        self.snapshot_bytes = size
        self.snapshot_seconds = round((self.clock.monotonic_ns() - started_ns) / SECOND_NS, 3)
        log.info(
            "replica %d: snapshot at %d: %d bytes in %.2fs",
            self.config.id,
            meta.index,
            self.snapshot_bytes,
            self.snapshot_seconds,
        )
        self._snapshot_taken = meta
        self._wakeup.set()

    def stats(self) -> ReplicaStats:
        node = self.core
        assert self.log is not None
        return ReplicaStats(
            node.role.value,
            node.term,
            node.leader_id,
            node.commit_index,
            node.applied_index,
            self.log.fsyncs,
            self.log.entries_persisted,
            self.proposal_count,
            self.log.snapshot.meta.index,
            self.snapshots_installed,
            self.disk_error.message if self.disk_error is not None else "",
            self.loop_errors,
            self.last_loop_error,
            self.snapshot_bytes,
            self.snapshot_seconds,
            self.transport.snapshots_sent,
            self.log.slow_fsyncs,
        )
