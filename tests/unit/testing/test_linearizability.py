"""The linearizability checker: generated linearizable histories pass, known anomalies fail, it agrees with a
brute-force search on small histories, and it stops at its bound."""

from __future__ import annotations

import time
from collections.abc import Hashable, Sequence
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from feitian.testing.linearizability import (
    IMPOSSIBLE,
    CasRegister,
    HistoryRecorder,
    NotLinearizableError,
    Operation,
    OpKind,
    Outcome,
    check,
    load_events,
    operations_of,
)

R, W, CAS = OpKind.READ, OpKind.WRITE, OpKind.CAS
OK, FAIL, INFO = Outcome.OK, Outcome.FAIL, Outcome.INFO


def op(
    i: int,
    kind: OpKind,
    start: int,
    end: int | None,
    *,
    value: Hashable = None,
    expected: Hashable = None,
    result: Hashable = None,
    outcome: Outcome = OK,
    key: str = "x",
) -> Operation:
    if end is None and outcome is OK:
        outcome = INFO
    return Operation(i, i, key, kind, outcome, start, end, value, expected, result)


# -- known anomalies ----------------------------------------------------------------------------------------------


def test_sequential_history_is_linearizable() -> None:
    history = [
        op(0, R, 0, 1, result=None),
        op(1, W, 2, 3, value=1),
        op(2, R, 4, 5, result=1),
        op(3, CAS, 6, 7, expected=1, value=2, result=True),
        op(4, CAS, 8, 9, expected=1, value=3, result=False),
        op(5, R, 10, 11, result=2),
    ]
    assert check(history).valid is True


def test_stale_read_after_acknowledged_write_fails() -> None:
    history = [op(0, W, 0, 1, value=1), op(1, W, 2, 3, value=2), op(2, R, 4, 5, result=1)]
    result = check(history)
    assert result.valid is False
    assert result.keys["x"].stuck is not None and result.keys["x"].stuck.id == 2
    with pytest.raises(NotLinearizableError, match="NOT linearizable"):
        result.raise_if_not_linearizable()


def test_concurrent_read_may_see_either_value() -> None:
    for seen in (1, 2):
        history = [op(0, W, 0, 1, value=1), op(1, W, 2, 10, value=2), op(2, R, 3, 5, result=seen)]
        assert check(history).valid is True


def test_lost_write_fails() -> None:
    # Acknowledged write of 2, then every later read sees the older 1.
    history = [
        op(0, W, 0, 1, value=1),
        op(1, W, 2, 3, value=2),
        op(2, R, 4, 5, result=1),
        op(3, R, 6, 7, result=1),
    ]
    assert check(history).valid is False


def test_read_of_a_value_never_written_fails() -> None:
    assert check([op(0, W, 0, 1, value=1), op(1, R, 0, 5, result=7)]).valid is False


def test_two_cas_from_the_same_value_cannot_both_succeed() -> None:
    history = [
        op(0, W, 0, 1, value=0),
        op(1, CAS, 2, 6, expected=0, value=1, result=True),
        op(2, CAS, 3, 7, expected=0, value=2, result=True),
    ]
    assert check(history).valid is False


def test_cas_success_from_a_value_that_was_never_current_fails() -> None:
    history = [op(0, W, 0, 1, value=0), op(1, CAS, 2, 3, expected=5, value=1, result=True)]
    assert check(history).valid is False


def test_failed_cas_when_the_value_matched_fails() -> None:
    history = [op(0, W, 0, 1, value=0), op(1, CAS, 2, 3, expected=0, value=1, result=False)]
    assert check(history).valid is False


def test_failed_cas_observation_can_need_an_indeterminate_write() -> None:
    # The CAS saw something other than 0 although only 0 was acknowledged: the timed-out write of 9 explains it.
    history = [
        op(0, W, 0, 1, value=0),
        op(1, W, 2, None, value=9),
        op(2, CAS, 3, 4, expected=0, value=1, result=False),
    ]
    assert check(history).valid is True
    without = [history[0], history[2]]
    assert check(without).valid is False


def test_indeterminate_write_may_take_effect_late_or_never() -> None:
    timed_out = op(1, W, 2, None, value=2)
    late = [op(0, W, 0, 1, value=1), timed_out, op(2, R, 10, 11, result=1), op(3, R, 20, 21, result=2)]
    assert check(late).valid is True  # it took effect between the reads, long after the client gave up
    never = [op(0, W, 0, 1, value=1), timed_out, op(2, R, 10, 11, result=1)]
    assert check(never).valid is True
    # ... but once seen, it cannot un-happen.
    flip = [op(0, W, 0, 1, value=1), timed_out, op(2, R, 10, 11, result=2), op(3, R, 20, 21, result=1)]
    assert check(flip).valid is False


def test_failed_operations_are_ignored_and_failed_writes_cannot_be_read() -> None:
    history = [op(0, W, 0, 1, value=1), op(1, W, 2, 3, value=2, outcome=FAIL), op(2, R, 4, 5, result=1)]
    assert check(history).valid is True
    history[2] = op(2, R, 4, 5, result=2)
    assert check(history).valid is False


def test_keys_are_checked_independently() -> None:
    history = [
        op(0, W, 0, 1, value=1, key="a"),
        op(1, R, 2, 3, result=1, key="a"),
        op(2, W, 0, 1, value=1, key="b"),
        op(3, R, 2, 3, result=None, key="b"),
    ]
    result = check(history)
    assert result.valid is False
    assert result.keys["a"].valid is True and result.keys["b"].valid is False
    assert "key 'b': NOT linearizable" in result.explain()


def test_touching_operations_count_as_concurrent() -> None:
    # Equal timestamps: the read may be ordered before the write (the conservative choice).
    assert check([op(0, W, 0, 5, value=1), op(1, R, 5, 6, result=None)]).valid is True


def test_initial_value_of_the_model() -> None:
    assert check([op(0, R, 0, 1, result=0)], CasRegister(initial_value=0)).valid is True
    assert check([op(0, R, 0, 1, result=None)], CasRegister(initial_value=0)).valid is False


# -- the bound ----------------------------------------------------------------------------------------------------


def test_search_stops_at_its_bound_and_reports_unknown() -> None:
    # 16 concurrent writes of distinct values, 16 concurrent reads that each saw some value, and a final read of a
    # value nobody wrote: refuting it means exploring the writes' orders. With a tiny bound the answer is unknown.
    n = 16
    history = [op(i, W, 0, 100, value=i) for i in range(n)]
    history += [op(n + i, R, 0, 100, result=(i * 7) % n) for i in range(n)]
    history.append(op(2 * n, R, 200, 201, result="never"))
    started = time.monotonic()
    result = check(history, max_steps=20_000)
    assert time.monotonic() - started < 5
    assert result.valid is None
    assert result.keys["x"].steps == 20_001
    assert "unknown" in result.explain()
    with pytest.raises(NotLinearizableError, match="unknown"):
        result.raise_if_not_linearizable()


# -- the recorder -------------------------------------------------------------------------------------------------


def test_recorder_pairs_events_with_real_timestamps(tmp_path: Path) -> None:
    ticks = iter(range(100, 200))
    history = HistoryRecorder(clock=lambda: next(ticks))
    a = history.invoke(1, "k", W, value=b"v1")
    b = history.invoke(2, "k", R)
    history.ok(a)
    history.ok(b, b"v1")
    c = history.invoke(1, "k", CAS, value=b"v2", expected=b"v1")
    d = history.invoke(2, "k", W, value=b"v3")
    e = history.invoke(3, "k", W, value=b"v4")
    history.info(d)
    history.fail(e)
    ops = history.operations()
    assert [(o.id, o.outcome) for o in ops] == [(a, OK), (b, OK), (c, INFO), (d, INFO), (e, FAIL)]
    assert ops[0].invoke_ns == 100 and ops[0].complete_ns == 102
    assert ops[2].complete_ns is None  # never completed: indeterminate
    assert check(ops).valid is True
    with pytest.raises(ValueError, match="not in flight"):
        history.ok(a)
    with pytest.raises(ValueError, match="True or False"):
        history.ok(c, b"v2")
    path = str(tmp_path / "history.jsonl")
    history.dump(path)
    assert operations_of(load_events(path)) == ops


# -- generated histories ------------------------------------------------------------------------------------------

VALUES = st.integers(0, 3)


@st.composite
def linearizable_histories(draw: st.DrawFn) -> list[Operation]:
    """Execute random operations one after another at increasing linearization points on a model register, then
    stretch each into an interval around its point; some end indeterminate (applied or not) or failed."""
    n = draw(st.integers(1, 14))
    state: dict[str, Hashable] = {}
    points = sorted(draw(st.lists(st.integers(0, 1000), min_size=n, max_size=n, unique=True)))
    ops = []
    for i, point in enumerate(points):
        key = draw(st.sampled_from(["a", "b"]))
        kind = draw(st.sampled_from([R, W, CAS]))
        start = point - draw(st.integers(0, 300))
        end = point + draw(st.integers(0, 300))
        fate = draw(st.sampled_from([OK, OK, OK, INFO, FAIL]))
        applied = fate is OK or (fate is INFO and draw(st.booleans()))
        current = state.get(key)
        value = draw(VALUES) if kind is not R else None
        expected = draw(st.one_of(st.just(current), VALUES)) if kind is CAS else None
        result: Hashable = None
        if kind is R:
            result = current
        elif kind is W:
            if applied:
                state[key] = value
        elif applied:
            result = current == expected  # an indeterminate CAS that mismatched had no effect, as if never
            if result:
                state[key] = value
        ops.append(
            Operation(
                i,
                i,
                key,
                kind,
                fate,
                start,
                end if fate is not INFO else None,
                value,
                expected,
                result if fate is OK else None,
            )
        )
    return ops


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(linearizable_histories())
def test_generated_linearizable_histories_pass(history: list[Operation]) -> None:
    result = check(history)
    assert result.valid is True, result.explain()


@st.composite
def sequential_histories_with_one_corrupt_read(draw: st.DrawFn) -> list[Operation]:
    n = draw(st.integers(2, 30))
    current: Hashable = None
    ops: list[Operation] = []
    reads = []
    for i in range(n):
        kind = draw(st.sampled_from([R, W, CAS]))
        value = draw(VALUES) if kind is not R else None
        expected = draw(st.one_of(st.just(current), VALUES)) if kind is CAS else None
        result: Hashable = None
        if kind is R:
            result = current
            reads.append(i)
        elif kind is W:
            current = value
        else:
            result = current == expected
            if result:
                current = value
        ops.append(Operation(i, i % 3, "k", kind, OK, 10 * i, 10 * i + 5, value, expected, result))
    if not reads:
        ops.append(Operation(n, 0, "k", R, OK, 10 * n, 10 * n + 5, None, None, current))
        reads.append(n)
    victim = ops[draw(st.sampled_from(reads))]
    wrong = draw(st.sampled_from([v for v in [None, 0, 1, 2, 3, "x"] if v != victim.result]))
    ops[victim.id] = Operation(
        victim.id, victim.process, "k", R, OK, victim.invoke_ns, victim.complete_ns, None, None, wrong
    )
    return ops


@settings(max_examples=200, deadline=None)
@given(sequential_histories_with_one_corrupt_read())
def test_a_corrupted_read_in_a_sequential_history_fails(history: list[Operation]) -> None:
    assert check(history).valid is False


def brute_force(ops: Sequence[Operation]) -> bool:
    """The definition, directly: some order of all completed operations and any subset of the indeterminate
    writes, consistent with real time, that a sequential register explains."""
    model = CasRegister()
    live = [o for o in ops if not (o.outcome is FAIL or (o.outcome is INFO and o.kind is R))]

    def search(remaining: list[Operation], state: Hashable) -> bool:
        if all(o.outcome is INFO for o in remaining):
            return True
        for candidate in remaining:
            # ``candidate`` can go next only if no remaining completed operation ended before it began.
            if any(
                r.complete_ns is not None and r.complete_ns < candidate.invoke_ns and r is not candidate
                for r in remaining
            ):
                continue
            after = model.step(state, candidate)
            rest = [r for r in remaining if r is not candidate]
            if after is not IMPOSSIBLE and search(rest, after):
                return True
            if candidate.outcome is INFO and search(rest, state):
                return True
        return False

    return search(live, model.initial())


@st.composite
def arbitrary_small_histories(draw: st.DrawFn) -> list[Operation]:
    n = draw(st.integers(1, 6))
    ops = []
    for i in range(n):
        kind = draw(st.sampled_from([R, W, CAS]))
        start = draw(st.integers(0, 20))
        length = draw(st.integers(0, 10))
        outcome = draw(st.sampled_from([OK, OK, OK, INFO, FAIL]))
        value = draw(st.integers(0, 2)) if kind is not R else None
        expected = draw(st.one_of(st.none(), st.integers(0, 2))) if kind is CAS else None
        if kind is R:
            result: Hashable = draw(st.one_of(st.none(), st.integers(0, 2)))
        elif kind is CAS:
            result = draw(st.booleans())
        else:
            result = None
        ops.append(
            Operation(
                i,
                i,
                "k",
                kind,
                outcome,
                start,
                start + length if outcome is not INFO else None,
                value,
                expected,
                result if outcome is OK else None,
            )
        )
    return ops


@settings(max_examples=500, deadline=None)
@given(arbitrary_small_histories())
def test_agrees_with_brute_force_on_small_histories(history: list[Operation]) -> None:
    assert check(history).valid is brute_force(history)
