"""Raft messages between replicas, over Kuafu.

Each Ready's messages are grouped by destination and sent as one-way ``raft.Step`` messages per peer, each at
most about ``MAX_STEP_BYTES`` (``Client.post``: no reply frame; Raft's own responses travel as messages the other
way). While the connection to a peer is open and writable a batch is written at once; otherwise it waits in that
peer's bounded queue for a task that connects and waits for room. When the queue is full the oldest batch is
dropped (Raft tolerates lost messages) and the core is told the peer is unreachable; so is it when a connection
cannot be made, and then the queued batches are dropped too. A slow or dead peer never blocks the others or
grows memory. Replicas serve ``raft.Step`` with a synchronous handler run as each frame arrives — no queue or
task, in arrival order — so client floods in the lanes do not delay consensus traffic (KUAFU-7).
``InstallSnapshot`` messages go in bounded chunks instead (:mod:`feitian.replica.snapshot_transfer`). Sending
never raises: a message that cannot go is dropped, and its peer reported unreachable.
"""

from __future__ import annotations

import asyncio
import collections
import logging
from collections.abc import Awaitable, Callable, Sequence

from feitian.base.clock import Clock, MonotonicClock
from feitian.consensus import AppendEntries, InstallSnapshot, Message, SnapshotMeta
from feitian.errors import FeitianError
from feitian.replica.snapshot_transfer import SnapshotSender
from feitian.rpc import Client, Request

log = logging.getLogger(__name__)

RAFT_LANE = "raft"
RAFT_RESOURCE = "raft:/"  # a secured cluster grants replicas WRITE on it (security/authority/cluster.py)
# A Ready's messages for one peer are split into raft.Step messages of about this size at most (a follower being
# caught up may be sent its whole in-flight window at once); snapshots travel in chunks (snapshot_transfer).
MAX_STEP_BYTES = 4 << 20


class Step(Request[None], frozen=True, tag="raft.Step"):
    """Messages for one replica (``to_id`` of each)."""

    cluster: str
    messages: list[Message]


class _PeerSender:
    """Messages for one peer, in order: posted at once while its connection is open and writable, else queued
    (bounded) for a task that connects and waits for room."""

    def __init__(self, transport: Transport, peer_id: int, address: str) -> None:
        self.transport = transport
        self.peer_id = peer_id
        self.address = address
        self.queue: collections.deque[list[Message]] = collections.deque()
        self.task: asyncio.Task[None] | None = None
        self.dropped = 0

    def push(self, batch: list[Message]) -> None:
        transport = self.transport
        if not self.queue:
            try:
                if transport.client.try_post(self.address, Step(transport.cluster, batch)):
                    return
            except FeitianError as exc:  # e.g. MessageTooLargeError: never fatal, the core sends again
                self.dropped += 1
                transport.warn(f"raft.Step to replica {self.peer_id} refused before sending: {exc.message}")
                transport.unreachable(self.peer_id)
                return
        if len(self.queue) >= transport.max_queued_batches:
            self.queue.popleft()
            self.dropped += 1
            transport.unreachable(self.peer_id)
        self.queue.append(batch)
        if self.task is None or self.task.done():
            self.task = asyncio.get_running_loop().create_task(self._drain())

    async def _drain(self) -> None:
        transport = self.transport
        while self.queue:
            batch = self.queue.popleft()
            try:
                await transport.client.post(
                    self.address, Step(transport.cluster, batch), timeout=transport.send_timeout_s
                )
            except FeitianError as exc:
                log.debug("raft.Step to %d at %s failed: %s", self.peer_id, self.address, exc)
                self.dropped += len(self.queue) + 1  # all stale by now: the core resends what is still needed
                self.queue.clear()
                transport.unreachable(self.peer_id)

    def close(self) -> None:
        if self.task is not None:
            self.task.cancel()


class Transport:
    """Sends the core's messages to peers (see module docstring)."""

    def __init__(
        self,
        cluster: str,
        peers: dict[int, str],
        client: Client,
        unreachable: Callable[[int], None],
        report_snapshot: Callable[[int, bool], None],
        snapshot_data: Callable[[SnapshotMeta], Awaitable[bytes]],
        *,
        max_queued_batches: int = 256,
        send_timeout_s: float = 2.0,
        max_step_bytes: int = MAX_STEP_BYTES,
        clock: Clock | None = None,
    ) -> None:
        self.cluster = cluster
        self.clock = clock or MonotonicClock()  # rate-limits warnings; measures snapshot transfers
        self.peers = dict(peers)
        self.client = client
        self.unreachable = unreachable
        self.report_snapshot = report_snapshot
        self.snapshot_data = snapshot_data
        self.max_queued_batches = max_queued_batches
        self.send_timeout_s = send_timeout_s
        self.max_step_bytes = max_step_bytes
        self._senders: dict[int, _PeerSender] = {}
        self._snapshots: dict[int, SnapshotSender] = {}
        self._warned_at_ns: int | None = None

    def warn(self, what: str) -> None:
        """Log a transport problem, at most once a minute (the rest at debug level)."""
        now_ns = self.clock.monotonic_ns()
        if self._warned_at_ns is None or now_ns - self._warned_at_ns >= 60 * 1_000_000_000:
            self._warned_at_ns = now_ns
            log.warning("%s (repeats within a minute are logged at debug level)", what)
        else:
            log.debug("%s", what)

    def send(self, messages: Sequence[Message]) -> None:
        """Send a Ready's messages; never raises (a message that cannot be sent is dropped, and its peer reported
        unreachable: Raft sends again what is still needed)."""
        by_peer: dict[int, list[list[Message]]] = {}
        sizes: dict[int, int] = {}
        for message in messages:
            if isinstance(message, InstallSnapshot):
                self._snapshot(message)
                continue
            size = _estimated_bytes(message)
            batches = by_peer.setdefault(message.to_id, [[]])
            if batches[-1] and sizes.get(message.to_id, 0) + size > self.max_step_bytes:
                batches.append([])  # one raft.Step stays well under Kuafu's message bound
                sizes[message.to_id] = 0
            batches[-1].append(message)
            sizes[message.to_id] = sizes.get(message.to_id, 0) + size
        for peer_id, batches in by_peer.items():
            try:
                sender = self._senders.get(peer_id)
                if sender is None:
                    address = self.peers.get(peer_id)
                    if address is None:
                        self.warn(f"no address for replica {peer_id}; dropping its messages")
                        continue
                    sender = self._senders[peer_id] = _PeerSender(self, peer_id, address)
                for batch in batches:
                    sender.push(batch)
            except Exception as exc:  # a bug here must not stop the replica: drop, report, go on
                log.exception("sending to replica %d failed: %s", peer_id, exc)
                self.unreachable(peer_id)

    def _snapshot(self, message: InstallSnapshot) -> None:
        sender = self._snapshots.get(message.to_id)
        if sender is None:
            address = self.peers.get(message.to_id)
            if address is None:
                self.warn(f"no address for replica {message.to_id}; dropping its snapshot")
                return
            sender = self._snapshots[message.to_id] = SnapshotSender(
                self.cluster,
                message.to_id,
                address,
                self.client,
                self.report_snapshot,
                self.snapshot_data,
                clock=self.clock,
            )
        sender.start(message)

    @property
    def snapshots_sent(self) -> int:
        return sum(s.sent for s in self._snapshots.values())

    def close(self) -> None:
        for sender in self._senders.values():
            sender.close()
        for snapshots in self._snapshots.values():
            snapshots.close()
        self._senders.clear()
        self._snapshots.clear()


def _estimated_bytes(message: Message) -> int:
    """About how many bytes ``message`` takes encoded (its entries' data dominate)."""
    if isinstance(message, AppendEntries):
        return 64 + sum(48 + len(entry.data) for entry in message.entries)
    return 64
