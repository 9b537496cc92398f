"""Raft messages between replicas, over Kuafu.

Each Ready's messages are grouped by destination and sent as one ``raft.Step`` call per peer. A peer has its own
sender with a bounded queue and a few calls in flight; when the queue is full the oldest batch is dropped (Raft
tolerates lost messages) and the core is told the peer is unreachable, so a slow or dead peer never blocks the
others or grows memory. Replicas serve ``raft.Step`` in a lane of their own, so client floods do not delay
consensus traffic (KUAFU-7).
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
    def __init__(self, transport: Transport, peer_id: int, address: str) -> None:
        self.transport = transport
        self.peer_id = peer_id
        self.address = address
        self.queue: collections.deque[list[Message]] = collections.deque()
        self.wakeup = asyncio.Event()
        self.tasks = [asyncio.get_running_loop().create_task(self._run()) for _ in range(transport.max_in_flight)]
        self.dropped = 0

    def push(self, batch: list[Message]) -> None:
        if len(self.queue) >= self.transport.max_queued_batches:
            self.queue.popleft()
            self.dropped += 1
            self.transport.unreachable(self.peer_id)
        self.queue.append(batch)
        self.wakeup.set()

    async def _run(self) -> None:
        while True:
            if not self.queue:
                self.wakeup.clear()
                await self.wakeup.wait()
                continue
            batch = self.queue.popleft()
            try:
                await self.transport.client.call(
                    self.address, Step(self.transport.cluster, batch), timeout=self.transport.send_timeout_s
                )
            except FeitianError as exc:
                log.debug("raft.Step to %d at %s failed: %s", self.peer_id, self.address, exc)
                self.transport.unreachable(self.peer_id)

    def close(self) -> None:
        for task in self.tasks:
            task.cancel()


class Transport:
    """Sends the core's messages to peers (see module docstring)."""

    def __init__(
        self,
        cluster: str,
        peers: dict[int, str],
        client: Client,
        unreachable: Callable[[int], None],
        *,
        max_in_flight: int = 2,
        max_queued_batches: int = 256,
        send_timeout_s: float = 2.0,
    ) -> None:
        self.cluster = cluster
        self.peers = dict(peers)
        self.client = client
        self.unreachable = unreachable
        self.max_in_flight = max_in_flight
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
