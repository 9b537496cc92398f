"""A Pangu master replica (PANGU-1): the namespace replicated by Raft, and the leader's duties.

Every master runs :class:`feitian.replica.driver.Replica` over :class:`MasterStateMachine` (the pure
:class:`~feitian.dfs.core.DfsStateMachine` plus a note of which chunks each command touched). Only the leader
answers clients and chunk servers; a follower refuses with NotLeaderError carrying the leader's address, which
clients follow. Reads of metadata on the leader first pass a read barrier (ReadIndex), so they are linearizable:
a deposed leader that has not noticed yet cannot answer from stale state.

When a replica becomes leader it builds a :class:`~feitian.dfs.master_leader.Leadership` (the cluster's soft
state: heartbeats, reports, repair) once it has applied everything committed before; until then it answers
UnavailableError("leader starting"), which clients retry.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from feitian.base.clock import Clock, MonotonicClock
from feitian.dfs.core import (
    AddChunk,
    AddReplica,
    BumpChunkVersion,
    CloseFile,
    Command,
    CommitChunk,
    DfsStateMachine,
    NamespaceConfig,
    RemoveReplica,
    encode_command,
)
from feitian.dfs.core.records import FileNode
from feitian.dfs.master_tokens import TokenMinter
from feitian.dfs.options import MasterOptions
from feitian.errors import FeitianError, NotLeaderError, UnavailableError, UnavailableReason
from feitian.replica.driver import Replica, ReplicaConfig
from feitian.rpc import Client

if TYPE_CHECKING:
    from feitian.dfs.master_leader import Leadership

__all__ = ["DfsMaster", "MasterStateMachine"]

log = logging.getLogger(__name__)


class MasterStateMachine(DfsStateMachine):
    """The replicated namespace; after each command that changed chunks it calls ``on_change(ids, now_ns)``
    (the leader doubts reports about those chunks that may predate the change)."""

    def __init__(self, config: NamespaceConfig, on_change: Callable[[list[int], int], None]) -> None:
        super().__init__(config)
        self.on_change = on_change

    def apply_command(self, command: Command) -> Any:
        touched = self._touched_before(command)
        result = super().apply_command(command)
        if not isinstance(result, FeitianError):
            if isinstance(command, AddChunk):
                touched.append(command.chunk_id)
            if touched:
                self.on_change(touched, self.clock_ns)
        return result

    def _touched_before(self, command: Command) -> list[int]:
        if isinstance(command, CommitChunk | BumpChunkVersion | AddReplica | RemoveReplica):
            return [command.chunk_id]
        if isinstance(command, AddChunk | CloseFile):
            file = self.tree.nodes.get(command.file_id)
            if isinstance(file, FileNode) and file.chunks:
                return [file.chunks[-1]]
        return []


class DfsMaster:
    """One master replica: the replicated namespace, the leader's duties and the client-facing service."""

    def __init__(
        self,
        node_name: str,
        options: MasterOptions,
        replica_config: ReplicaConfig,
        client: Client,
        security: Any | None,
        *,
        clock: Clock | None = None,
        rng: random.Random | None = None,
    ) -> None:
        self.node_name = node_name
        self.options = options
        self.clock = clock or MonotonicClock()
        self.rng = rng or random.Random()
        self.client = client
        self.security = security
        self.minter = TokenMinter(security)
        self.config = options.namespace_config()
        self.cluster_config = options.cluster_config()
        self.sm = MasterStateMachine(self.config, self._chunks_changed)
        self.replica = Replica(
            replica_config,
            self.sm,
            client,
            rng=self.rng,
            on_leader_change=lambda _leader: self._wake.set(),
        )
        self.leadership: Leadership | None = None  # while this replica leads
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None

    # -- lifecycle -----------------------------------------------------------------------------------------------

    async def start(self) -> None:
        await self.replica.start()
        self._task = asyncio.get_running_loop().create_task(self._run())

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        await self._step_down()
        await self.replica.stop()

    async def _run(self) -> None:
        """Follow leadership changes (woken by the replica, checked every interval anyway) and run the leader's
        maintenance ticks."""
        from feitian.dfs.master_leader import Leadership

        interval = self.options.maintenance_interval_s
        while True:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), interval)
            self._wake.clear()
            try:
                if self.replica.is_leader and self.leadership is None:
                    leadership = Leadership(self, self.clock.wall_ns())
                    self.leadership = leadership
                    await leadership.start()
                elif not self.replica.is_leader and self.leadership is not None:
                    await self._step_down()
                if self.leadership is not None and self.leadership.ready:
                    await self.leadership.tick()
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("master %s: leader duties failed; retrying", self.node_name)

    async def _step_down(self) -> None:
        leadership, self.leadership = self.leadership, None
        if leadership is not None:
            log.info("master %s is no longer the leader", self.node_name)
            await leadership.stop()

    def _chunks_changed(self, chunk_ids: list[int], now_ns: int) -> None:
        leadership = self.leadership
        if leadership is not None:
            for chunk_id in chunk_ids:
                leadership.cluster.note_chunk_changed(chunk_id, now_ns)

    # -- what handlers use ---------------------------------------------------------------------------------------

    def leader(self) -> Leadership:
        """The leader's duties; NotLeaderError (with the leader's address) on a follower."""
        if not self.replica.is_leader:
            hint = self.replica.leader_address or ""
            raise NotLeaderError(f"dfs master {self.node_name} is not the leader", leader_hint=hint)
        leadership = self.leadership
        if leadership is None or not leadership.ready:
            raise UnavailableError(
                f"dfs master {self.node_name}: leader starting, retry", reason=UnavailableReason.LEADER_STARTING
            )
        return leadership

    async def propose(self, command: Command) -> Any:
        result = await self.replica.propose(encode_command(command))
        if isinstance(result, FeitianError):
            raise result
        return result

    async def read_barrier(self) -> None:
        await self.replica.read_barrier()

    def now_ns(self) -> int:
        return max(self.clock.wall_ns(), self.sm.clock_ns)
