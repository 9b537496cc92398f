"""A Pangu master replica (PANGU-1): the namespace replicated by Raft, and the leader's duties.

Every master is a :class:`feitian.replica.ReplicatedService` over :class:`MasterStateMachine` (the pure
:class:`~feitian.dfs.core.DfsStateMachine` plus a note of which chunks each command touched). Only the leader
answers clients and chunk servers; a follower refuses with the kit's NotLeaderError carrying the leader's
address, which clients follow. Reads of metadata on the leader first pass a read barrier (ReadIndex), so they
are linearizable: a deposed leader that has not noticed yet cannot answer from stale state.

The leader's duties run on the kit's :class:`~feitian.replica.LeaderDuties`: once this replica has applied
everything committed before its term (a read barrier, the duties' start of term) it builds a
:class:`~feitian.dfs.master.leader.Leadership` (the cluster's soft state: heartbeats, reports, repair) and runs
the maintenance loop as a leader-only task; until then it refuses as a leader still taking over, which clients
retry. On step-down both stop.
"""

from __future__ import annotations

import logging
import random
from collections.abc import Callable, Coroutine
from typing import Any

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
from feitian.dfs.master.leader import Leadership
from feitian.dfs.master.tokens import TokenMinter
from feitian.dfs.options import MasterOptions
from feitian.errors import FeitianError
from feitian.replica import ReplicaConfig, ReplicatedService
from feitian.rpc import Client
from feitian.runtime.periodic import PeriodicTask

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


class DfsMaster(ReplicatedService):
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
        self.rng = rng or random.Random()
        self.client = client
        self.security = security
        self.minter = TokenMinter(security)
        self.config = options.namespace_config()
        self.cluster_config = options.cluster_config()
        self.sm = MasterStateMachine(self.config, self._chunks_changed)
        super().__init__(
            f"dfs master {node_name}", replica_config, self.sm, client, clock=clock or MonotonicClock(), rng=self.rng
        )
        self.leadership: Leadership | None = None  # while this replica leads and is ready
        self.maintenance: PeriodicTask | None = None  # the maintenance rounds of the latest term led
        self.duties.on_ready(self._became_ready)
        self.duties.on_step_down(self._step_down)
        self.duties.add_task(self._maintain)

    # -- the leader's duties -------------------------------------------------------------------------------------

    def _became_ready(self, term: int) -> None:
        leadership = Leadership(self, self.clock.wall_ns())
        leadership.next_chunk_id = self.sm.next_chunk_id
        leadership.ready = True
        self.leadership = leadership
        log.info("master %s leads term %d: %d chunk servers registered", self.node_name, term, len(self.sm.servers()))

    async def _step_down(self) -> None:
        leadership, self.leadership = self.leadership, None
        if leadership is not None:
            log.info("master %s is no longer the leader", self.node_name)
            await leadership.stop()

    def _maintain(self) -> Coroutine[Any, Any, None]:
        """The leader's maintenance rounds (a leader-only task): one at once, then every interval, on the master's
        clock; a round that fails is logged and counted (``maintenance.errors``) and the next follows on time."""
        self.maintenance = PeriodicTask(
            f"master {self.node_name} maintenance",
            self._maintenance_round,
            self.options.maintenance_interval_s,
            clock=self.clock,
            logger=log,
        )
        return self.maintenance.run()

    async def _maintenance_round(self) -> None:
        leadership = self.leadership
        if leadership is not None:
            await leadership.tick()

    def _chunks_changed(self, chunk_ids: list[int], now_ns: int) -> None:
        leadership = self.leadership
        if leadership is not None:
            for chunk_id in chunk_ids:
                leadership.cluster.note_chunk_changed(chunk_id, now_ns)

    # -- what handlers use ---------------------------------------------------------------------------------------

    def leader(self) -> Leadership:
        """The leader's duties; the kit's NotLeaderError (with the leader's address) elsewhere."""
        self.duties.require_ready(f"dfs master {self.node_name}")
        leadership = self.leadership
        if leadership is None:
            raise self.duties.not_leader(f"dfs master {self.node_name}")
        return leadership

    async def propose_command(self, command: Command) -> Any:
        """Replicate a namespace command (bounded by the deadline of the call being handled) and return its
        result; NotLeaderError on a follower."""
        return await self.propose(None, encode_command(command), type(command).__name__)

    async def leader_read_barrier(self) -> None:
        await self.read_barrier(None)

    def now_ns(self) -> int:
        return max(self.clock.wall_ns(), self.sm.clock_ns)
