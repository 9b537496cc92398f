"""What only the leader master does: chunk servers' heartbeats and reports, placement of new chunks, tokens,
pipeline and lease recovery, and the maintenance loop (repair, cleanup, garbage, balance, decommission).

The soft state lives in a :class:`~feitian.dfs.core.ClusterState` built when this replica became leader (docs/
dfs.md, "Repair, balance and decommission"); every decision that changes metadata is proposed as a command.
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import logging
import os
import random
from collections.abc import Coroutine, Iterable
from typing import Any, Protocol

from feitian.base.clock import Clock
from feitian.base.units import SECOND_NS
from feitian.dfs.core import (
    AcquireLease,
    AddChunk,
    AddReplica,
    BumpChunkVersion,
    ChunkLocation,
    CloseFile,
    ClusterConfig,
    ClusterState,
    Command,
    CopyReason,
    CopyTask,
    DfsStateMachine,
    ExpiredLease,
    FileType,
    LeaseMode,
    RemovalReason,
    RemoveReplica,
    ReplicaReport,
    ReplicaState,
    ServerState,
    SetServerState,
    choose_replicas,
    token_expiry,
)
from feitian.dfs.core.geometry import ChunkGeometry
from feitian.dfs.core.records import ChunkRecord, FileNode
from feitian.dfs.master.tokens import TokenMinter
from feitian.dfs.messages.chunk import ChunkInfo, CopyChunk, GetChunkInfo, SyncChunk
from feitian.dfs.messages.master import ChunkGrant, Heartbeat, HeartbeatReply, ServerAddress
from feitian.dfs.options import MasterOptions
from feitian.errors import (
    AccessReason,
    ConflictError,
    ConflictReason,
    FeitianError,
    InternalError,
    InvalidArgumentError,
    NotFoundError,
    PermissionDeniedError,
    UnavailableError,
    UnavailableReason,
)
from feitian.rpc import Client, current_deadline

__all__ = ["Leadership", "MasterContext"]

log = logging.getLogger(__name__)
NONCE_TTL_NS = 60 * 1_000_000_000
PLACE_POLL_S = 0.2  # while chunk servers register with a new leader, how often a write waiting for them looks
PLACE_WAIT_NS = 2 * SECOND_NS  # and how long one call waits before answering "retry" (leader_starting)
_GOOD = (ReplicaState.GOOD, ReplicaState.UNCONFIRMED)


class MasterContext(Protocol):
    """What the leader's duties use of their master (``DfsMaster``): named here, so this module does not import
    the master that builds it."""

    node_name: str
    options: MasterOptions
    cluster_config: ClusterConfig
    client: Client
    minter: TokenMinter
    rng: random.Random
    clock: Clock

    @property
    def sm(self) -> DfsStateMachine: ...

    async def propose_command(self, command: Command) -> Any: ...

    def now_ns(self) -> int: ...


class Leadership:
    def __init__(self, master: MasterContext, now_ns: int) -> None:
        self.master = master
        self.sm = master.sm
        self.cluster = ClusterState(master.sm, now_ns, master.cluster_config)
        self.ready = False
        self.server_keys: dict[str, bytes] = {}  # chunk server -> its public key (tokens bound to it)
        self.started_ns = now_ns
        self.next_chunk_id = 0
        self.tasks: set[asyncio.Task[Any]] = set()
        self.recovering: set[int] = set()  # files under lease recovery
        self.recovering_chunks: dict[int, asyncio.Task[ChunkGrant]] = {}  # one pipeline recovery per chunk
        self.create_nonces: dict[bytes, tuple[str, str, int]] = {}  # nonce -> (principal, path, expiry ns)
        self.ticks = 0
        self.balancing = False  # `feitian dfs balance` asked: balance every round until nothing is left to move
        self.balance_every = max(1, round(master.options.balance_interval_s / master.options.maintenance_interval_s))

    # -- lifecycle -----------------------------------------------------------------------------------------------

    async def stop(self) -> None:
        self.ready = False
        for task in list(self.tasks):
            task.cancel()
        await asyncio.gather(*self.tasks, return_exceptions=True)

    def spawn(self, coro: Coroutine[Any, Any, Any]) -> None:
        task = asyncio.get_running_loop().create_task(coro)
        self.tasks.add(task)
        task.add_done_callback(self.tasks.discard)

    def now(self) -> int:
        return self.master.now_ns()

    # -- chunk servers -------------------------------------------------------------------------------------------

    async def heartbeat(self, principal: Any, req: Heartbeat) -> HeartbeatReply:
        if principal is not None:
            if principal.name != req.server_id:
                raise PermissionDeniedError(
                    f"heartbeat for {req.server_id!r} from {principal.describe()}: a chunk server speaks for itself",
                    reason=AccessReason.WRONG_SERVER,
                )
            self.server_keys[req.server_id] = principal.public_key
        info = self.sm.server(req.server_id)
        now = self.now()
        if info is None or info.address != req.address or info.rack != req.rack:
            from feitian.dfs.core import RegisterServer

            await self.master.propose_command(
                RegisterServer(req.server_id, req.address, req.rack, max(1, req.capacity_bytes), now)
            )
            log.info("chunk server %s registered at %s (rack %s)", req.server_id, req.address, req.rack)
        cluster = self.cluster
        cluster.handle_heartbeat(req.server_id, now, used_bytes=req.used_bytes, capacity_bytes=req.capacity_bytes)
        for report in req.changed:
            cluster.handle_chunk_added(req.server_id, report, now)
        for chunk_id in req.deleted:
            cluster.handle_chunk_removed(req.server_id, chunk_id, now)
        for chunk_id in req.corrupt:
            if chunk_id in self.sm.table.chunks:
                cluster.report_corrupt(req.server_id, chunk_id)
        full = cluster.servers[req.server_id].reported is None
        return HeartbeatReply(full, cluster.deletes_for(req.server_id, now))

    def chunk_report(self, principal: Any, server_id: str, chunks: Iterable[ReplicaReport]) -> None:
        if principal is not None and principal.name != server_id:
            raise PermissionDeniedError(f"chunk report for {server_id!r} from {principal.describe()}")
        self.cluster.handle_chunk_report(server_id, self.now(), chunks)

    # -- grants and placement ------------------------------------------------------------------------------------

    def file_of(self, chunk: ChunkRecord) -> FileNode:
        file = self.sm.tree.nodes[chunk.file_id]
        assert isinstance(file, FileNode)
        return file

    def geometry(self, chunk_id: int) -> ChunkGeometry:
        file = self.file_of(self.sm.table.chunk("chunk", chunk_id))
        return ChunkGeometry(
            chunk_id, file.chunk_size_bytes, self.sm.config.block_size_bytes, file.file_type is FileType.LOG
        )

    def grant(
        self, location: ChunkLocation, caller_key: bytes, *, write: bool, lease_expires_ns: int = 0
    ) -> ChunkGrant:
        """Where the chunk's replicas are (readable ones first for readers) and a token for each."""
        now = self.now()
        replicas = list(location.replicas)
        if not write:
            states = self.cluster.replica_states(location.chunk_id, now)
            replicas.sort(key=lambda s: states.get(s) not in _GOOD)
        servers = []
        for server_id in replicas:
            info = self.sm.server(server_id)
            servers.append(ServerAddress(server_id, info.address if info else "", info.rack if info else ""))
        ttl = int(self.master.options.read_token_ttl_s * SECOND_NS)
        expires = token_expiry(now, ttl, lease_expires_ns if write else None)
        minter, version, chunk_id = self.master.minter, location.version, location.chunk_id
        tokens = tuple(
            minter.mint(s, chunk_id, version, write=write, now_ns=now, expires_ns=expires, holder_key=caller_key)
            for s in replicas
        )
        chain: tuple[bytes, ...] = ()
        if write and minter.enabled:
            chain = (
                b"",
                *tuple(
                    minter.mint(
                        replicas[i],
                        chunk_id,
                        version,
                        write=True,
                        now_ns=now,
                        expires_ns=expires,
                        holder_key=self.server_keys.get(replicas[i - 1], b""),
                    )
                    for i in range(1, len(replicas))
                ),
            )
        return ChunkGrant(location, self.geometry(chunk_id), tuple(servers), tokens, chain)

    def place(
        self, file: FileNode, count: int, exclude: Iterable[str], existing: tuple[str, ...] = ()
    ) -> tuple[str, ...]:
        views = self.cluster.server_views(self.now())
        return choose_replicas(
            views,
            count,
            chunk_bytes=file.chunk_size_bytes,
            rng=self.master.rng,
            policy=self.cluster.config.placement,
            exclude=tuple(exclude),
            existing=existing,
        )

    async def check_placeable(
        self, op: str, path: str, needed: int, replication: int, chunk_bytes: int, exclude: Iterable[str] = ()
    ) -> None:
        """Refuse at once (UnavailableError, ``no_servers``) a write whose chunks cannot get ``needed`` replicas:
        fewer live chunk servers in service with room for a chunk. A leader younger than the heartbeat timeout
        (chunk servers may still be registering: a cluster that just started) waits for them instead, up to
        PLACE_WAIT_NS per call, then answers ``leader_starting``, which callers retry."""
        exclude = tuple(exclude)
        waited_ns = 0
        while True:
            views = self.cluster.server_views(self.now())
            chosen = choose_replicas(
                views,
                needed,
                chunk_bytes=chunk_bytes,
                rng=self.master.rng,
                policy=self.cluster.config.placement,
                exclude=exclude,
            )
            if len(chosen) >= needed:
                return
            young = self.now() - self.started_ns < self.cluster.config.heartbeat_timeout_ns
            if not young or not self.ready:
                break
            if waited_ns >= PLACE_WAIT_NS:  # the caller's attempt must not time out: it retries this one
                raise UnavailableError(
                    f"{op} {path}: chunk servers are still registering with a new master leader",
                    reason=UnavailableReason.LEADER_STARTING,
                )
            await self.master.clock.sleep(PLACE_POLL_S)
            waited_ns += int(PLACE_POLL_S * SECOND_NS)
        live = [v for v in views if v.live]
        in_service = [v for v in live if not v.decommissioning]
        excluded = [v for v in in_service if v.server_id in exclude]
        counts = [
            (len(views) - len(live), "not live"),
            (len(live) - len(in_service), "decommissioning or decommissioned"),
            (len(excluded), "failed this writer"),
            (len(in_service) - len(excluded) - len(chosen), "too full"),
        ]
        others = "".join(f", {n} {what}" for n, what in counts if n)
        what = f"replication {replication}" if needed == replication else f"min_write_replicas {needed}"
        raise UnavailableError(
            f"{op} {path}: {what} needs {needed} chunk servers that can take a {chunk_bytes / (1 << 20):g} MiB "
            f"chunk; {len(chosen)} can ({len(views)} registered{others})",
            hint=f"write with a replication of at most {len(chosen)}, or start more chunk servers"
            if chosen
            else "start chunk servers (`feitian dfs servers` lists them)",
            reason=UnavailableReason.NO_SERVERS,
            needed=needed,
            available=len(chosen),
        )

    async def add_chunk(
        self, file: FileNode, lease_id: int, previous_length: int, exclude: tuple[str, ...], caller_key: bytes
    ) -> ChunkGrant:
        replicas = self.place(file, file.replication, exclude)
        if len(replicas) < file.min_write_replicas:
            path = self.sm.path_of(file.inode)
            await self.check_placeable(
                "add chunk to", path, file.min_write_replicas, file.replication, file.chunk_size_bytes, exclude
            )
            replicas = self.place(file, file.replication, exclude)
        for _ in range(3):
            chunk_id = self.next_chunk_id = max(self.next_chunk_id, self.sm.next_chunk_id)
            self.next_chunk_id += 1
            command = AddChunk(file.inode, lease_id, chunk_id, replicas, self.now(), previous_length)
            try:
                location: ChunkLocation = await self.master.propose_command(command)
            except InvalidArgumentError as exc:
                if "already allocated" in exc.message:
                    continue  # another allocation took the id first
                raise
            lease = file.lease
            return self.grant(location, caller_key, write=True, lease_expires_ns=lease.expires_ns if lease else 0)
        raise InternalError("add chunk: could not allocate a chunk id")

    # -- recovery of a write pipeline ----------------------------------------------------------------------------

    async def probe(self, server_id: str, chunk_id: int, version: int) -> ChunkInfo | None:
        """The replica's state; a live server that never got a byte of the chunk counts as holding 0 bytes."""
        info = self.sm.server(server_id)
        if info is None:
            return None
        try:
            return await self.master.client.call(
                info.address, GetChunkInfo(chunk_id, version), timeout=self.master.options.probe_timeout_s
            )
        except NotFoundError:
            return ChunkInfo(chunk_id, version, 0, 0, False)
        except FeitianError as exc:
            log.info("probe of chunk %d on %s failed: %s", chunk_id, server_id, exc)
            return None

    async def recover_chunk(
        self,
        file: FileNode,
        lease_id: int,
        chunk_id: int,
        version: int,
        failed: Iterable[str],
        acked_length: int,
        rebuild: bool,
        caller_key: bytes,
    ) -> ChunkGrant:
        """A new pipeline for a chunk whose writes failed (docs/dfs.md, "When a replica fails during a write").
        One recovery per chunk at a time: a retried request waits for the one under way and answers alike."""
        running = self.recovering_chunks.get(chunk_id)
        while running is not None and not running.done():
            await asyncio.wait([running])
            running = self.recovering_chunks.get(chunk_id)
        # Not bounded by the deadline of the call that started it (its proposals would inherit it): the recovery
        # outlives a caller that gives up, and a retry joins it.
        unbounded = contextvars.copy_context()
        unbounded.run(current_deadline.set, None)
        task = asyncio.get_running_loop().create_task(
            self._recover_chunk(file, lease_id, chunk_id, version, failed, acked_length, rebuild, caller_key),
            context=unbounded,
        )
        self.recovering_chunks[chunk_id] = task

        def forget(done: asyncio.Task[ChunkGrant]) -> None:
            if self.recovering_chunks.get(chunk_id) is done:
                del self.recovering_chunks[chunk_id]
            if not done.cancelled():
                done.exception()  # retrieved: whoever still waits gets it through the shield

        task.add_done_callback(forget)
        return await asyncio.shield(task)  # a caller that gives up does not cut a recovery short

    async def _recover_chunk(
        self,
        file: FileNode,
        lease_id: int,
        chunk_id: int,
        version: int,
        failed: Iterable[str],
        acked_length: int,
        rebuild: bool,
        caller_key: bytes,
    ) -> ChunkGrant:
        chunk = self.sm.table.chunk("recover chunk", chunk_id)
        path = self.sm.path_of(file.inode)
        if chunk.file_id != file.inode:
            raise InvalidArgumentError(f"recover {path}: chunk {chunk_id} belongs to another file")
        lease = file.lease
        expires = lease.expires_ns if lease else 0
        if version < chunk.version and chunk.writer_lease_id == lease_id:  # an earlier attempt succeeded
            return self.grant(self.sm.chunk_location(chunk_id), caller_key, write=True, lease_expires_ns=expires)
        if version != chunk.version:
            raise ConflictError(f"recover {path}: chunk {chunk_id} is at v{chunk.version}, not v{version}")
        now = self.now()
        failed = set(failed)
        candidates = [s for s in chunk.replicas if s not in failed and self.cluster.is_live(s, now)]
        infos = await asyncio.gather(*(self.probe(s, chunk_id, version) for s in candidates))
        floor = max(acked_length, chunk.length)
        survivors = [
            (s, i) for s, i in zip(candidates, infos, strict=True) if i and not i.corrupt and i.length >= floor
        ]
        if not survivors:
            raise UnavailableError(
                f"recover {path}: no reachable replica of chunk {chunk_id} holds its {floor} acknowledged bytes",
                hint="the chunk servers holding it may come back; retry",
                reason=UnavailableReason.NO_SURVIVOR,
            )
        agreed = chunk.length if chunk.sealed else min(i.length for _, i in survivors)
        names = tuple(s for s, _ in survivors)
        new_version = chunk.version + 1
        added: tuple[str, ...] = ()
        if rebuild:
            added = await self._replacements(file, chunk, names, failed, agreed, new_version)
        seal = chunk.sealed or not rebuild
        location: ChunkLocation = await self.master.propose_command(
            BumpChunkVersion(file.inode, lease_id, chunk_id, new_version, names + added, now, agreed, seal)
        )
        await asyncio.gather(*(self._sync(s, chunk_id, new_version, agreed, seal) for s in names))
        for server_id in added:
            self.cluster.finish_copy(chunk_id, server_id)
        log.info("recovered chunk %d of %s: v%d on %s, %d bytes", chunk_id, path, new_version, names + added, agreed)
        return self.grant(location, caller_key, write=True, lease_expires_ns=expires)

    async def _sync(self, server_id: str, chunk_id: int, version: int, length: int, seal: bool) -> None:
        info = self.sm.server(server_id)
        if info is None:
            return
        try:
            request = SyncChunk(chunk_id, version, length, seal, self.geometry(chunk_id))
            await self.master.client.call(info.address, request, timeout=self.master.options.probe_timeout_s)
        except FeitianError as exc:  # that replica is stale now; repair replaces it
            log.warning("sync of chunk %d v%d on %s failed: %s", chunk_id, version, server_id, exc)

    async def _replacements(
        self,
        file: FileNode,
        chunk: ChunkRecord,
        survivors: tuple[str, ...],
        failed: set[str],
        length: int,
        version: int,
    ) -> tuple[str, ...]:
        need = file.replication - len(survivors)
        if need <= 0:
            return ()
        targets = self.place(file, need, {*chunk.replicas, *failed}, survivors)
        done = []
        for target in targets:
            task = CopyTask(chunk.chunk_id, chunk.version, length, survivors[0], target, CopyReason.REPAIR)
            self.cluster.copies[(chunk.chunk_id, target)] = (task, self.now())  # not garbage while it lands
            if await self._copy_bytes(task, sealed=chunk.sealed, target_version=version):
                done.append(target)
            else:
                self.cluster.finish_copy(chunk.chunk_id, target)
        if len(survivors) + len(done) < file.min_write_replicas:
            raise UnavailableError(
                f"rebuild chunk {chunk.chunk_id}: {len(survivors) + len(done)} replicas, the file needs "
                f"{file.min_write_replicas}",
                reason=UnavailableReason.NO_SERVERS,
            )
        return tuple(done)

    # -- copies --------------------------------------------------------------------------------------------------

    async def _copy_bytes(self, task: CopyTask, *, sealed: bool, target_version: int = 0) -> bool:
        source, target = self.sm.server(task.source), self.sm.server(task.target)
        if source is None or target is None:
            return False
        version = target_version or task.version
        now = self.now()
        token = self.master.minter.mint(
            target.server_id,
            task.chunk_id,
            version,
            write=True,
            now_ns=now,
            expires_ns=now + int(self.master.options.copy_timeout_s * SECOND_NS),
            holder_key=self.server_keys.get(source.server_id, b""),
        )
        request = CopyChunk(
            self.geometry(task.chunk_id),
            task.version,
            task.length,
            sealed,
            target.server_id,
            target.address,
            token,
            target_version,
        )
        try:
            await self.master.client.call(source.address, request, timeout=self.master.options.copy_timeout_s)
        except FeitianError as exc:
            log.warning("copy of chunk %d %s -> %s failed: %s", task.chunk_id, task.source, task.target, exc)
            return False
        self.cluster.handle_chunk_added(task.target, ReplicaReport(task.chunk_id, version, task.length), self.now())
        return True

    async def run_copy(self, task: CopyTask) -> None:
        """A planned copy (repair, balance, decommission): bytes, then AddReplica, then drop the old replica."""
        try:
            chunk = self.sm.table.chunks.get(task.chunk_id)
            if chunk is None or chunk.version != task.version:
                return
            if not await self._copy_bytes(task, sealed=chunk.sealed):
                return
            now = self.now()
            await self.master.propose_command(AddReplica(task.chunk_id, task.target, task.version, task.length, now))
            if task.drop is not None:
                moved = (CopyReason.BALANCE, CopyReason.SPREAD)
                reason = RemovalReason.BALANCE if task.reason in moved else RemovalReason.DECOMMISSION
                await self.master.propose_command(RemoveReplica(task.chunk_id, task.drop, reason))
            log.info("%s copy of chunk %d: %s -> %s done", task.reason, task.chunk_id, task.source, task.target)
        except FeitianError as exc:
            log.warning("%s copy of chunk %d to %s: %s", task.reason, task.chunk_id, task.target, exc)
        finally:
            self.cluster.finish_copy(task.chunk_id, task.target)

    # -- maintenance ---------------------------------------------------------------------------------------------

    async def tick(self, *, balance: bool | None = None) -> int:
        """One maintenance round; returns the number of copies started."""
        self.ticks += 1
        now = self.now()
        if balance is None:
            periodic = self.master.options.balance_interval_s > 0 and self.ticks % self.balance_every == 0
            balance = self.balancing or periodic
        for server_id in self.cluster.tick(now):
            log.warning(
                "chunk server %s is dead (no heartbeat for %.0fs)", server_id, self.master.options.heartbeat_timeout_s
            )
        in_flight = len(self.cluster.copies)
        plan = self.cluster.plan_maintenance(now, self.master.rng, balance=balance)
        if self.balancing and not plan.copies and not in_flight:
            self.balancing = False  # even (within the threshold), or nothing can move
            log.info("balance: done")
        for removal in plan.removals:
            try:
                await self.master.propose_command(removal)
                log.info("removed replica of chunk %d on %s (%s)", removal.chunk_id, removal.server_id, removal.reason)
            except FeitianError as exc:
                log.info("remove replica of chunk %d on %s: %s", removal.chunk_id, removal.server_id, exc)
        for task in plan.copies:
            self.spawn(self.run_copy(task))
        for server_id in plan.decommissioned:
            with contextlib.suppress(FeitianError):
                await self.master.propose_command(SetServerState(server_id, ServerState.DECOMMISSIONED))
                log.info("chunk server %s finished decommissioning: it holds nothing and gets nothing", server_id)
        for expired in self.sm.expired_leases(now):
            if expired.file_id not in self.recovering:
                self.recovering.add(expired.file_id)
                self.spawn(self.recover_lease(expired))
        self.cluster.forget_changes_before(now)
        for nonce in [n for n, (_, _, t) in self.create_nonces.items() if t < now]:
            del self.create_nonces[nonce]
        return len(plan.copies)

    async def recover_lease(self, expired: ExpiredLease) -> None:
        """A writer vanished: take the file over, seal its last chunk at what its replicas agree on, close."""
        try:
            now = self.now()
            ttl = int(self.master.options.lease_ttl_s * SECOND_NS)
            holder = f"master:{self.master.node_name}"
            grant = await self.master.propose_command(
                AcquireLease(expired.path, holder, LeaseMode.APPEND, now, now + ttl)
            )
            file = self.sm.tree.file("recover lease", grant.file_id)
            if file.chunks:
                last = self.sm.table.chunks[file.chunks[-1]]
                if not last.sealed:
                    await self.recover_chunk(file, grant.lease_id, last.chunk_id, last.version, (), 0, False, b"")
            await self.master.propose_command(CloseFile(grant.file_id, grant.lease_id, self.now()))
            log.info("recovered the lease of %s (held by %r)", expired.path, expired.holder)
        except (FeitianError, NotFoundError) as exc:
            log.warning("lease recovery of %s: %s (retried later)", expired.path, exc)
        finally:
            self.recovering.discard(expired.file_id)

    async def release_lease(self, file: FileNode, lease_id: int) -> int:
        """A writer gives up (``FileWriter.abort``): what lease recovery does when a lease expires, at once and
        under the writer's own lease — seal the last chunk where its replicas agree, close. Answers the length."""
        path = self.sm.path_of(file.inode)
        lease = file.lease
        if lease is None or lease.lease_id != lease_id:
            raise ConflictError(
                f"release {path}: lease {lease_id} is not the file's", reason=ConflictReason.STALE_LEASE
            )
        if file.chunks:
            last = self.sm.table.chunks[file.chunks[-1]]
            if not last.sealed:
                await self.recover_chunk(file, lease_id, last.chunk_id, last.version, (), 0, False, b"")
        length: int = await self.master.propose_command(CloseFile(file.inode, lease_id, self.now()))
        log.info("%s: its writer gave up; sealed and closed at %d bytes", path, length)
        return length

    def new_create_nonce(self, principal_id: str, path: str) -> bytes:
        nonce = os.urandom(16)
        self.create_nonces[nonce] = (principal_id, path, self.now() + NONCE_TTL_NS)
        return nonce

    def take_create_nonce(self, nonce: bytes, principal_id: str, path: str) -> bool:
        entry = self.create_nonces.pop(nonce, None)
        return entry is not None and entry[0] == principal_id and entry[1] == path and entry[2] >= self.now()
