"""The kit's leadership duties (replica/duties.py): start-of-term entry, ready, leader-only tasks stopped on
step-down — driven by a fake replica whose leadership the test changes."""

from __future__ import annotations

import asyncio
import types

import pytest

from feitian.errors import NotLeaderError, UnavailableError
from feitian.replica.duties import LeaderDuties
from feitian.testing.waiting import wait_for_condition


class FakeReplica:
    def __init__(self) -> None:
        self.is_leader = False
        self.node = types.SimpleNamespace(term=1)
        self.leader_address: str | None = "tcp://other:1"
        self.config = types.SimpleNamespace(id=2)
        self.proposed: list[bytes] = []
        self.barriers = 0
        self.fail_next = False

    async def propose(self, data: bytes, timeout: float | None = None) -> None:
        await asyncio.sleep(0)
        if self.fail_next:
            self.fail_next = False
            raise UnavailableError("leadership lost before the proposal committed", outcome="unknown")
        self.proposed.append(data)

    async def read_barrier(self, timeout: float | None = None) -> None:
        await asyncio.sleep(0)
        self.barriers += 1

    def lead(self, term: int) -> None:
        self.is_leader, self.node.term, self.leader_address = True, term, "tcp://me:1"

    def follow(self, term: int) -> None:
        self.is_leader, self.node.term, self.leader_address = False, term, "tcp://other:1"


class Recorder:
    def __init__(self, duties: LeaderDuties) -> None:
        self.events: list[str] = []
        self.running = 0
        duties.on_ready(lambda term: self.events.append(f"ready {term}"))
        duties.on_step_down(lambda: self.events.append("down"))
        duties.add_task(self.task)

    async def task(self) -> None:
        self.running += 1
        try:
            await asyncio.Event().wait()
        finally:
            self.running -= 1
            self.events.append("task stopped")


async def test_ready_after_the_start_entry_applies_then_stopped_on_step_down_and_again_next_term() -> None:
    replica = FakeReplica()
    duties = LeaderDuties(replica, start_entry=lambda term: f"start {term}".encode(), poll_s=0.01)  # type: ignore[arg-type]
    seen = Recorder(duties)
    await duties.start()
    try:
        await duties.check()  # what each poll does
        assert not duties.ready and replica.proposed == [] and seen.running == 0  # a follower does nothing
        replica.lead(2)
        duties.leader_changed()
        await wait_for_condition(lambda: duties.ready, 5, "the duties ready")
        assert replica.proposed == [b"start 2"] and duties.term == 2
        await wait_for_condition(lambda: seen.running == 1, 5, "the leader task running")
        replica.follow(3)
        duties.leader_changed()
        await wait_for_condition(lambda: seen.running == 0 and not duties.ready, 5, "the task stopped")
        assert seen.events == ["ready 2", "down", "task stopped"]
        replica.lead(4)
        await wait_for_condition(lambda: seen.running == 1, 5, "the task started again in term 4")
        assert replica.proposed == [b"start 2", b"start 4"] and duties.terms_led == 2
    finally:
        await duties.stop()
    assert seen.running == 0 and seen.events[-2:] == ["down", "task stopped"]


async def test_a_new_term_with_the_same_leader_restarts_the_duties() -> None:
    replica = FakeReplica()
    duties = LeaderDuties(replica, poll_s=0.01)  # type: ignore[arg-type]
    seen = Recorder(duties)
    replica.lead(2)
    await duties.start()
    try:
        await wait_for_condition(lambda: duties.ready and seen.running == 1, 5, "ready in term 2")
        assert replica.barriers == 1  # no start entry: a read barrier starts the term
        replica.node.term = 5  # re-elected without the leader changing (no callback): the poll sees it
        await wait_for_condition(lambda: duties.term == 5 and seen.running == 1, 5, "ready in term 5")
        assert seen.events == ["ready 2", "down", "task stopped", "ready 5"]
    finally:
        await duties.stop()


async def test_a_failed_start_entry_is_tried_again_and_the_replica_refuses_until_ready() -> None:
    replica = FakeReplica()
    duties = LeaderDuties(replica, start_entry=lambda term: b"start", poll_s=0.01)  # type: ignore[arg-type]
    with pytest.raises(NotLeaderError) as follower:
        duties.require_ready("put /k")
    assert follower.value.fields["leader_hint"] == "tcp://other:1"
    replica.lead(2)
    replica.fail_next = True
    with pytest.raises(NotLeaderError, match="taking over") as starting:
        duties.require_ready("put /k")
    assert starting.value.fields["leader_hint"] == ""
    await duties.start()
    try:
        await wait_for_condition(lambda: duties.ready, 5, "ready after the retried start entry")
        assert replica.proposed == [b"start"]
        duties.require_ready("put /k")
    finally:
        await duties.stop()
