"""Raft messages between replicas, over Kuafu.

Each Ready's messages are grouped by destination and sent as one one-way ``raft.Step`` message per peer
(``Client.post``: no reply frame; Raft's own responses travel as messages the other way). While the connection to
a peer is open and writable a batch is written at once; otherwise it waits in that peer's bounded queue for a task
that connects and waits for room. When the queue is full the oldest batch is dropped (Raft tolerates lost
messages) and the core is told the peer is unreachable; so is it when a connection cannot be made, and then the
queued batches are dropped too. A slow or dead peer never blocks the others or grows memory. Replicas serve
``raft.Step`` with a synchronous handler run as each frame arrives — no queue or task, in arrival order — so client
floods in the lanes do not delay consensus traffic (KUAFU-7).
"""

from __future__ import annotations

import asyncio
import collections
import logging
from collections.abc import Callable, Sequence

from feitian.consensus import Message
from feitian.errors import FeitianError
from feitian.rpc import Client, Request

log = logging.getLogger(__name__)

RAFT_LANE = "raft"
RAFT_RESOURCE = "raft:/"  # a secured cluster grants replicas WRITE on it (deploy/cluster_security.py)


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
        if not self.queue and transport.client.try_post(self.address, Step(transport.cluster, batch)):
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
        *,
        max_queued_batches: int = 256,
        send_timeout_s: float = 2.0,
    ) -> None:
        self.cluster = cluster
        self.peers = dict(peers)
        self.client = client
        self.unreachable = unreachable
        self.max_queued_batches = max_queued_batches
        self.send_timeout_s = send_timeout_s
        self._senders: dict[int, _PeerSender] = {}

    def send(self, messages: Sequence[Message]) -> None:
        by_peer: dict[int, list[Message]] = {}
        for message in messages:
            by_peer.setdefault(message.to_id, []).append(message)
        for peer_id, batch in by_peer.items():
            sender = self._senders.get(peer_id)
            if sender is None:
                address = self.peers.get(peer_id)
                if address is None:
                    log.warning("no address for replica %d; dropping %d message(s)", peer_id, len(batch))
                    continue
                sender = self._senders[peer_id] = _PeerSender(self, peer_id, address)
            sender.push(batch)

    def close(self) -> None:
        for sender in self._senders.values():
            sender.close()
        self._senders.clear()
