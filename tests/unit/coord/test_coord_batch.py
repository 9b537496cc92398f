"""Write batches: independent writes in one log entry, each applied, deduplicated and answered as if alone; and
the client's batcher that makes them from the writes issued in one event-loop step."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from coord_fixtures import ALICE, Harness, fingerprint

from feitian.coord.client.batching import WriteBatcher, batchable_size
from feitian.coord.core import Batch, BatchApplied, CoordLimits, Created, CreateNode, DeleteNode, SetNode, Updated
from feitian.coord.core.results import ErrorValue
from feitian.coord.messages import CreateRequest, SetRequest, WriteBatchReply, WriteBatchRequest
from feitian.errors import (
    ConflictError,
    InvalidArgumentError,
    MessageTooLargeError,
    NotFoundError,
    PermissionDeniedError,
    UnavailableError,
)


def _set(path: str, value: bytes, seq: int, **kw: Any) -> SetNode:
    return SetNode(principal=ALICE, path=path, value=value, client_id="c1", request_seq=seq, **kw)


def _mixed_batch() -> Batch:
    return Batch(
        commands=(
            _set("/a", b"1", 1),
            _set("/a", b"2", 2, expected_version=7),  # a conflict: fails alone
            CreateNode(principal=ALICE, path="/missing/x", client_id="c1", request_seq=3),  # no parent
            CreateNode(principal=ALICE, path="/b", value=b"b", client_id="c1", request_seq=4),
            SetNode(principal=ALICE, path="bad-path", value=b"", client_id="c1", request_seq=5),  # invalid
            DeleteNode(principal=ALICE, path="/a", client_id="c1", request_seq=6),
        )
    )


def test_each_write_of_a_batch_applies_alone_with_its_own_revision_and_result() -> None:
    h = Harness()
    h.create("/a", b"0")
    before = h.sm.revision
    done = h.ok(_mixed_batch(), BatchApplied)
    parts = h.sm.last_applied.parts
    assert done.count == len(parts) == 6
    kinds = [type(p.result) for p in parts]
    assert kinds[0] is Updated and kinds[1] is ConflictError and kinds[2] is NotFoundError
    assert kinds[3] is Created and kinds[4] is InvalidArgumentError
    assert parts[0].result.revision == before + 1  # type: ignore[union-attr]
    assert parts[3].result.revision == before + 2  # type: ignore[union-attr]
    assert h.sm.revision == done.revision == before + 3  # set, create and delete changed the tree
    assert "/a" not in h.sm.tree.nodes and h.sm.get("/b").value == b"b"
    assert [e.revision for e in h.sm.last_applied.events] == [before + 1, before + 2, before + 3]
    # The same as applying the writes one by one.
    alone = Harness()
    alone.create("/a", b"0")
    for command in _mixed_batch().commands:
        alone.apply(command)
    assert fingerprint(alone.sm) == fingerprint(h.sm)


def test_a_retried_batch_is_answered_write_by_write_from_the_remembered_results() -> None:
    h = Harness()
    h.create("/a", b"0")
    h.ok(_mixed_batch(), BatchApplied)
    first = [p.result for p in h.sm.last_applied.parts]
    revision = h.sm.revision
    h.ok(_mixed_batch(), BatchApplied)  # e.g. resent to a new leader after a failover
    again = h.sm.last_applied.parts
    assert h.sm.revision == revision
    for a, b in zip(first, (p.result for p in again), strict=True):
        assert type(a) is type(b) and str(a) == str(b)
    assert [p.duplicate for p in again] == [True, True, True, True, False, True]  # the invalid one was not kept


def test_a_batch_beyond_its_bounds_is_refused_whole() -> None:
    h = Harness(CoordLimits(max_batch_writes=2, max_batch_bytes=10))
    h.create("/a")
    assert isinstance(h.apply(Batch(commands=())), InvalidArgumentError)
    three = Batch(commands=tuple(_set("/a", b"", seq) for seq in (1, 2, 3)))
    assert isinstance(h.apply(three), InvalidArgumentError)
    assert isinstance(h.apply(Batch(commands=(_set("/a", b"x" * 20, 1),))), MessageTooLargeError)
    assert h.sm.get("/a").stat.version == 1  # nothing applied


# -- the client's batcher ---------------------------------------------------------------------------------------


class FakeLeader:
    """Answers writes like a leader would: sets succeed unless the value is b"conflict"; optionally refuses
    any batch with ``batch_error``."""

    def __init__(self, batch_error: Exception | None = None) -> None:
        self.sent: list[Any] = []
        self.batch_error = batch_error

    def answer(self, write: Any) -> Any:
        if write.value == b"conflict":
            return ConflictError(f"set {write.path}: version mismatch")
        return Updated(stat=None, revision=write.request_seq)  # type: ignore[arg-type]

    async def send(self, request: Any) -> Any:
        self.sent.append(request)
        await asyncio.sleep(0)
        if isinstance(request, WriteBatchRequest):
            if self.batch_error is not None:
                raise self.batch_error
            results = [self.answer(w) for w in request.writes]
            return WriteBatchReply(
                results=tuple(ErrorValue.from_error(r) if isinstance(r, Exception) else r for r in results)
            )
        result = self.answer(request)
        if isinstance(result, Exception):
            raise result
        return result


def _batcher(leader: FakeLeader, **kw: Any) -> tuple[WriteBatcher, set[asyncio.Task[Any]]]:
    tasks: set[asyncio.Task[Any]] = set()

    def spawn(coro: Any) -> asyncio.Task[Any]:
        task = asyncio.get_running_loop().create_task(coro)
        tasks.add(task)
        return task

    return WriteBatcher(leader.send, spawn, **kw), tasks


def _write(seq: int, value: bytes = b"v") -> SetRequest:
    return SetRequest(path=f"/k{seq}", value=value, client_id="c1", request_seq=seq)


async def _submit(batcher: WriteBatcher, request: SetRequest) -> Any:
    size = batchable_size(request)
    assert size is not None
    return await batcher.submit(request, size)


async def test_writes_issued_in_one_step_travel_as_one_batch_and_each_gets_its_own_answer() -> None:
    leader = FakeLeader()
    batcher, _ = _batcher(leader)
    writes = [_write(seq, b"conflict" if seq == 3 else b"v") for seq in range(1, 6)]
    results = await asyncio.gather(*(_submit(batcher, w) for w in writes), return_exceptions=True)
    assert len(leader.sent) == 1 and isinstance(leader.sent[0], WriteBatchRequest)
    assert [type(r) for r in results] == [Updated, Updated, ConflictError, Updated, Updated]
    assert [r.revision for r in results if isinstance(r, Updated)] == [1, 2, 4, 5]
    assert (batcher.batches, batcher.batched_writes) == (1, 5)


async def test_a_lone_write_goes_as_itself() -> None:
    leader = FakeLeader()
    batcher, _ = _batcher(leader)
    assert (await _submit(batcher, _write(1))).revision == 1
    assert [type(r) for r in leader.sent] == [SetRequest]
    with pytest.raises(ConflictError):
        await _submit(batcher, _write(2, b"conflict"))


async def test_batches_are_bounded_by_count_and_bytes_and_large_writes_go_alone() -> None:
    leader = FakeLeader()
    batcher, _ = _batcher(leader, max_writes=3, max_bytes=1000, max_item_bytes=100)
    writes = [_write(seq) for seq in range(1, 8)] + [_write(8, b"x" * 200)]
    await asyncio.gather(*(_submit(batcher, w) for w in writes))
    sizes = sorted(len(r.writes) if isinstance(r, WriteBatchRequest) else 1 for r in leader.sent)
    assert sizes == [1, 1, 3, 3]  # 7 small ones in batches of at most 3, the large one alone


@pytest.mark.parametrize(
    "refusal",
    [
        PermissionDeniedError("write coord:/k2 by bob: not granted"),
        NotFoundError("unknown method 'coord.WriteBatch'", reason="unknown_method"),
    ],
)
async def test_a_refused_batch_is_resent_write_by_write(refusal: Exception) -> None:
    leader = FakeLeader(batch_error=refusal)
    batcher, _ = _batcher(leader)
    results = await asyncio.gather(*(_submit(batcher, _write(seq)) for seq in (1, 2, 3)))
    assert [r.revision for r in results] == [1, 2, 3]
    assert [type(r) for r in leader.sent] == [WriteBatchRequest, SetRequest, SetRequest, SetRequest]


async def test_an_unavailable_leader_fails_every_write_of_the_batch() -> None:
    leader = FakeLeader(batch_error=UnavailableError("no replica answered"))
    batcher, _ = _batcher(leader)
    results = await asyncio.gather(*(_submit(batcher, _write(seq)) for seq in (1, 2)), return_exceptions=True)
    assert all(isinstance(r, UnavailableError) for r in results) and len(leader.sent) == 1


async def test_closing_the_client_fails_writes_in_flight_instead_of_leaving_them_waiting() -> None:
    gate = asyncio.Event()

    async def stuck(request: Any) -> Any:
        await gate.wait()

    tasks: list[asyncio.Task[Any]] = []
    started = asyncio.Event()

    def spawn(coro: Any) -> asyncio.Task[Any]:
        tasks.append(asyncio.get_running_loop().create_task(coro))
        started.set()
        return tasks[-1]

    batcher = WriteBatcher(stuck, spawn)
    waiting = [asyncio.ensure_future(_submit(batcher, _write(seq))) for seq in (1, 2)]
    await started.wait()
    for task in tasks:
        task.cancel()
    results = await asyncio.gather(*waiting, return_exceptions=True)
    assert all(type(r).__name__ == "CallCancelledError" for r in results)


def test_only_node_writes_can_join_a_batch() -> None:
    from feitian.coord.messages import CreateSessionRequest

    assert batchable_size(CreateRequest(path="/abc", value=b"12")) == 6
    assert batchable_size(CreateSessionRequest(ttl_ms=5000)) is None


async def test_a_write_cancelled_while_its_group_forms_does_not_hold_back_the_others() -> None:
    leader = FakeLeader()
    batcher, _ = _batcher(leader)
    first, *others = [asyncio.ensure_future(_submit(batcher, _write(seq))) for seq in (1, 2, 3)]
    await asyncio.sleep(0)  # the first write waits one step for company; the others have joined it
    first.cancel()
    results = await asyncio.gather(*others)
    assert [r.revision for r in results] == [2, 3] and first.cancelled()
    assert len(leader.sent) == 1 and [w.request_seq for w in leader.sent[0].writes] == [2, 3]
