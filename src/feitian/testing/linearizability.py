"""Histories of concurrent register operations, and a linearizability checker for them.

Record what concurrent clients did — each operation's invocation and completion, with real monotonic timestamps —
then ask whether some total order of the operations, consistent with real time, explains every result::

    history = HistoryRecorder()
    op = history.invoke(process=3, key="x", kind=OpKind.CAS, value=b"new", expected=b"old")
    try:
        swapped = await do_cas(...)
    except TimeoutError:
        history.info(op)              # indeterminate: it may or may not have taken effect
    else:
        history.ok(op, swapped)       # a CAS completes with True (swapped) or False (value differed)
    ...
    check(history.operations()).raise_if_not_linearizable()

**Operations.** Single registers keyed by name, initially ``None`` (absent). ``read`` completes with the value
read; ``write(value)``; ``cas(expected, value)`` completes with ``True`` (it swapped) or ``False`` (the register
held something else: an observation, and no effect). An operation ends in one of three ways:

* ``ok`` — it happened, with the recorded result;
* ``fail`` — it certainly did not happen (refused before it could take effect); it is dropped;
* ``info`` — unknown (a timeout, a lost connection, a leader change with ``outcome="unknown"``). It may have taken
  effect at any moment after its invocation — including long after the client gave up — or never. An indeterminate
  read constrains nothing and is dropped. An operation never completed counts as ``info``.

**The checker** is Wing & Gong's search with Lowe's memoization (as in Knossos' ``linear`` and Porcupine):

1. *Per-key decomposition.* Linearizability is local (Herlihy & Wing): a history is linearizable iff each key's
   sub-history is, so each key is checked alone.
2. Each key's operations become call and return entries in one list ordered by time (at equal timestamps calls
   come first, so touching operations count as concurrent — the conservative choice). Indeterminate writes have a
   call entry and no return entry: they can be placed anywhere after their call, or never.
3. Depth-first search: walk the list; at a call entry, try to linearize that operation now (the model accepts it
   in the current state) — remove it from the list and restart from the head; at a return entry, the operation
   ending there was never linearized before its response, so backtrack: undo the last choice and try the entry
   after it. Success when every ``ok`` operation is linearized.
4. *Memoization.* A configuration is (set of linearized operations, register value); a configuration seen before
   is never expanded again. This bounds the work by the number of distinct configurations rather than orders.

**Bound.** The problem is NP-complete in general, so each key's search stops after ``max_steps`` list steps
(default 10,000,000: about 4 s of CPU on the development VM; the memo table stayed under 100 MB there). A key
whose search hits the bound is *unknown*: neither valid nor a counterexample. ``CheckResult.valid`` is then
``None`` and :meth:`CheckResult.raise_if_not_linearizable` raises, so a test cannot pass on an unfinished check.
Linearizable histories are cheap — the depth-first search finds an order almost without backtracking (3,000
operations of 10 clients on 3 keys: ~10 ms). Refuting is the expensive case, since every configuration before the
anomaly must be exhausted: ~1,000 operations per key with 10 concurrent clients took up to ~1 s. What grows the
search is concurrency per key and indeterminate writes (each may be placed anywhere after its call, or nowhere);
those are pinned or pruned first where that is exact (``_simplify_indeterminate``). Keep per-key concurrency
modest and use several keys.

**Counterexamples.** A refuted key reports the deepest linearization found, the operation whose response could not
be explained (``stuck``), and the operations concurrent with it: usually enough to see the anomaly by eye.
"""

from __future__ import annotations

import enum
import json
import time
from collections.abc import Callable, Hashable, Iterable, Sequence
from dataclasses import dataclass, field, replace
from typing import Any, Protocol

DEFAULT_MAX_STEPS = 10_000_000

Value = Hashable  # register values: bytes, str, int, None — anything hashable


class OpKind(enum.Enum):
    READ = "read"
    WRITE = "write"
    CAS = "cas"


class Outcome(enum.Enum):
    OK = "ok"  # happened, with the recorded result
    FAIL = "fail"  # certainly did not happen
    INFO = "info"  # unknown: may have happened (at any time after the call) or not


@dataclass(frozen=True)
class Event:
    """One line of a history: an invocation or a completion (``type`` is ``invoke`` or an Outcome value)."""

    index: int
    op_id: int
    process: int | str
    type: str
    kind: OpKind
    key: str
    time_ns: int
    value: Value = None  # invoke: the value written (write, cas)
    expected: Value = None  # invoke of a cas
    result: Value = None  # ok of a read (value) or cas (True/False)


@dataclass(frozen=True)
class Operation:
    """An invocation paired with its completion."""

    id: int
    process: int | str
    key: str
    kind: OpKind
    outcome: Outcome
    invoke_ns: int
    complete_ns: int | None  # None: indeterminate (info or never completed)
    value: Value = None  # write/cas: the value written
    expected: Value = None  # cas: the value it requires
    result: Value = None  # read: the value read; cas: True (swapped) / False (mismatch)

    def __str__(self) -> str:
        args = {
            OpKind.READ: "",
            OpKind.WRITE: _short(self.value),
            OpKind.CAS: f"{_short(self.expected)} -> {_short(self.value)}",
        }[self.kind]
        end = "…" if self.complete_ns is None else f"{self.complete_ns}"
        shown = f" = {_short(self.result)}" if self.outcome is Outcome.OK and self.kind is not OpKind.WRITE else ""
        return (
            f"#{self.id} p{self.process} {self.kind.value}({self.key}{', ' if args else ''}{args}){shown} "
            f"[{self.outcome.value}] {self.invoke_ns}..{end}"
        )


def _short(value: Value) -> str:
    text = repr(value)
    return text if len(text) <= 24 else text[:21] + "..."


# -- recording ----------------------------------------------------------------------------------------------------


class HistoryRecorder:
    """Collects invoke/ok/fail/info events from many concurrent clients (one event loop or thread at a time).

    Timestamps come from ``clock`` (default ``time.monotonic_ns``): real-time order is what linearizability is
    about, so every client of one history must share the clock — record all of them in one process.
    """

    def __init__(self, clock: Callable[[], int] = time.monotonic_ns) -> None:
        self._clock = clock
        self.events: list[Event] = []
        self._open: dict[int, Event] = {}
        self._next_id = 0

    def invoke(self, process: int | str, key: str, kind: OpKind, *, value: Value = None, expected: Value = None) -> int:
        """Record an invocation just before the request is sent; returns the operation's id."""
        op_id = self._next_id
        self._next_id += 1
        event = Event(len(self.events), op_id, process, "invoke", kind, key, self._clock(), value, expected)
        self.events.append(event)
        self._open[op_id] = event
        return op_id

    def ok(self, op_id: int, result: Value = None) -> None:
        """It happened: a read with the value read, a CAS with True/False, a write with nothing."""
        call = self._close(op_id)
        if call.kind is OpKind.CAS and not isinstance(result, bool):
            raise ValueError(f"ok of cas #{op_id}: result must be True or False, got {result!r}")
        self._complete(call, Outcome.OK, result)

    def fail(self, op_id: int) -> None:
        """It certainly did not take effect (refused before it could)."""
        self._complete(self._close(op_id), Outcome.FAIL, None)

    def info(self, op_id: int) -> None:
        """Unknown whether it took effect (timeout, lost connection, leadership lost mid-flight)."""
        self._complete(self._close(op_id), Outcome.INFO, None)

    def _close(self, op_id: int) -> Event:
        call = self._open.pop(op_id, None)
        if call is None:
            raise ValueError(f"operation #{op_id} is not in flight")
        return call

    def _complete(self, call: Event, outcome: Outcome, result: Value) -> None:
        self.events.append(
            Event(
                len(self.events),
                call.op_id,
                call.process,
                outcome.value,
                call.kind,
                call.key,
                self._clock(),
                result=result,
            )
        )

    def operations(self) -> list[Operation]:
        """Pair invocations with completions; operations still in flight count as indeterminate."""
        return operations_of(self.events)

    def dump(self, path: str) -> None:
        """Write the events as JSON lines (values must be JSON-representable or bytes)."""
        with open(path, "w", encoding="utf-8") as f:
            for event in self.events:
                f.write(json.dumps(_event_json(event)) + "\n")


def operations_of(events: Iterable[Event]) -> list[Operation]:
    calls: dict[int, Event] = {}
    done: dict[int, Operation] = {}
    for event in events:
        if event.type == "invoke":
            calls[event.op_id] = event
            continue
        call = calls.pop(event.op_id)
        outcome = Outcome(event.type)
        done[call.op_id] = Operation(
            call.op_id,
            call.process,
            call.key,
            call.kind,
            outcome,
            call.time_ns,
            event.time_ns if outcome is not Outcome.INFO else None,
            call.value,
            call.expected,
            event.result if outcome is Outcome.OK else None,
        )
    for call in calls.values():
        done[call.op_id] = Operation(
            call.op_id, call.process, call.key, call.kind, Outcome.INFO, call.time_ns, None, call.value, call.expected
        )
    return [done[i] for i in sorted(done)]


def _event_json(event: Event) -> dict[str, Any]:
    def enc(v: Value) -> Any:
        return {"bytes": v.hex()} if isinstance(v, bytes) else v

    return {
        "index": event.index,
        "op": event.op_id,
        "process": event.process,
        "type": event.type,
        "f": event.kind.value,
        "key": event.key,
        "time_ns": event.time_ns,
        "value": enc(event.value),
        "expected": enc(event.expected),
        "result": enc(event.result),
    }


def load_events(path: str) -> list[Event]:
    """Read a history written by :meth:`HistoryRecorder.dump`."""

    def dec(v: Any) -> Value:
        if isinstance(v, dict) and set(v) == {"bytes"}:
            return bytes.fromhex(v["bytes"])
        if isinstance(v, list):
            return tuple(v)
        return v  # type: ignore[no-any-return]

    out = []
    with open(path, encoding="utf-8") as f:
        for line in f:
            d = json.loads(line)
            out.append(
                Event(
                    d["index"],
                    d["op"],
                    d["process"],
                    d["type"],
                    OpKind(d["f"]),
                    d["key"],
                    d["time_ns"],
                    dec(d["value"]),
                    dec(d["expected"]),
                    dec(d["result"]),
                )
            )
    return out


# -- the model ----------------------------------------------------------------------------------------------------


class Model(Protocol):
    """A sequential specification: ``step`` returns the state after ``op``, or :data:`IMPOSSIBLE` if ``op`` (with
    its recorded result) cannot happen in ``state``. States must be hashable. Indeterminate operations are stepped
    as if they succeeded (a CAS as swapped); leaving them out is the search's other choice."""

    def initial(self) -> Hashable: ...

    def step(self, state: Hashable, op: Operation) -> Hashable: ...


class _Impossible:
    __slots__ = ()

    def __repr__(self) -> str:
        return "IMPOSSIBLE"


IMPOSSIBLE: Hashable = _Impossible()


@dataclass(frozen=True)
class CasRegister:
    """A register holding one value (``initial_value`` before any write): read, write, compare-and-set."""

    initial_value: Value = None

    def initial(self) -> Hashable:
        return self.initial_value

    def step(self, state: Hashable, op: Operation) -> Hashable:
        if op.kind is OpKind.WRITE:
            return op.value
        if op.kind is OpKind.READ:
            return state if op.result == state else IMPOSSIBLE
        if op.outcome is Outcome.INFO or op.result is True:
            return op.value if state == op.expected else IMPOSSIBLE
        return state if state != op.expected else IMPOSSIBLE  # a CAS that saw another value


# -- the search ---------------------------------------------------------------------------------------------------


@dataclass
class KeyResult:
    key: str
    valid: bool | None  # None: the search hit max_steps
    operations: int  # operations checked (ok, and indeterminate writes/cas)
    steps: int
    stuck: Operation | None = None  # refuted: the operation whose result no order explains
    linearized: list[Operation] = field(default_factory=list)  # refuted: the deepest order found
    concurrent: list[Operation] = field(default_factory=list)  # refuted: operations overlapping ``stuck``

    def explain(self, limit: int = 20) -> str:
        if self.valid:
            return f"key {self.key!r}: linearizable ({self.operations} operations, {self.steps} steps)"
        if self.valid is None:
            return (
                f"key {self.key!r}: unknown — the search stopped at its bound after {self.steps} steps "
                f"({self.operations} operations)"
            )
        lines = [f"key {self.key!r}: NOT linearizable ({self.operations} operations, {self.steps} steps)"]
        if self.stuck is not None:
            lines.append(f"  no order explains: {self.stuck}")
        tail = self.linearized[-limit:]
        lines.append(f"  deepest order found ({len(self.linearized)} operations, last {len(tail)}):")
        lines.extend(f"    {op}" for op in tail)
        lines.append(f"  concurrent with it ({len(self.concurrent)}):")
        lines.extend(f"    {op}" for op in self.concurrent[:limit])
        return "\n".join(lines)


class NotLinearizableError(AssertionError):
    pass


@dataclass
class CheckResult:
    keys: dict[str, KeyResult]

    @property
    def valid(self) -> bool | None:
        """True: every key is linearizable; False: some key is not; None: no refutation, but some key unknown."""
        if any(r.valid is False for r in self.keys.values()):
            return False
        if any(r.valid is None for r in self.keys.values()):
            return None
        return True

    def explain(self) -> str:
        return "\n".join(r.explain() for r in self.keys.values())

    def raise_if_not_linearizable(self) -> None:
        """Raise unless the history is proven linearizable (an unknown key raises too)."""
        if self.valid is not True:
            bad = [r.explain() for r in self.keys.values() if r.valid is not True]
            raise NotLinearizableError("\n".join(bad))


def check(
    operations: Sequence[Operation],
    model: Model | None = None,
    *,
    max_steps: int = DEFAULT_MAX_STEPS,
) -> CheckResult:
    """Check a history (``HistoryRecorder.operations()``) key by key; see the module docstring."""
    by_key: dict[str, list[Operation]] = {}
    for op in operations:
        by_key.setdefault(op.key, []).append(op)
    the_model = model or CasRegister()
    return CheckResult({key: check_key(key, ops, the_model, max_steps) for key, ops in sorted(by_key.items())})


def check_key(key: str, operations: Sequence[Operation], model: Model, max_steps: int) -> KeyResult:
    ops = [op for op in operations if _relevant(op)]
    if isinstance(model, CasRegister):
        ops = _simplify_indeterminate(ops, model.initial_value)
    search = _Search(ops, model)
    valid = search.run(max_steps)
    result = KeyResult(key, valid, len(ops), search.steps)
    if valid is False:
        result.stuck = search.best_stuck
        result.linearized = search.best_order
        if search.best_stuck is not None:
            result.concurrent = _overlapping(ops, search.best_stuck)
    return result


def _relevant(op: Operation) -> bool:
    if op.outcome is Outcome.FAIL:
        return False
    if op.outcome is Outcome.INFO:
        return op.kind is not OpKind.READ  # an indeterminate read observed nothing we know
    return True


def _simplify_indeterminate(ops: list[Operation], initial: Value) -> list[Operation]:
    """Shrink what indeterminate writes and CASes may do (register model only); both rules are exact.

    Each pending indeterminate write doubles the configurations the search may visit (placed or not), so:

    * **Observed, unique value.** If no other operation writes ``v`` (and ``v`` is not the initial value) and a
      completed read returned ``v`` or a CAS expecting ``v`` succeeded, then the operation certainly took effect,
      before the earliest such observer completed: it gets that completion as its return time.
    * **Unobserved value.** If no read returned ``v``, no CAS expected ``v``, and no CAS that failed (observed
      "not equal") completed after the operation began, then had it taken effect it was overwritten before
      anyone looked, and removing it changes no other operation's result: it is dropped.
    """
    writers: dict[Hashable, int] = {}
    first_seen: dict[Hashable, int] = {}  # value -> earliest completion of an operation that observed it
    observed: set[Hashable] = set()
    last_failed_cas_end = -1
    for op in ops:
        if op.kind is not OpKind.READ:
            writers[op.value] = writers.get(op.value, 0) + 1
        if op.kind is OpKind.READ:
            observed.add(op.result)
            if op.complete_ns is not None:
                first_seen[op.result] = min(first_seen.get(op.result, op.complete_ns), op.complete_ns)
        elif op.kind is OpKind.CAS:
            observed.add(op.expected)
            if op.outcome is Outcome.OK and op.complete_ns is not None:
                if op.result is True:
                    first_seen[op.expected] = min(first_seen.get(op.expected, op.complete_ns), op.complete_ns)
                else:
                    last_failed_cas_end = max(last_failed_cas_end, op.complete_ns)
            elif op.outcome is Outcome.OK:
                last_failed_cas_end = 1 << 62
    out = []
    for op in ops:
        if op.outcome is not Outcome.INFO or op.kind is OpKind.READ:
            out.append(op)
        elif op.value in first_seen and writers[op.value] == 1 and op.value != initial:
            out.append(replace(op, complete_ns=max(op.invoke_ns, first_seen[op.value])))
        elif op.value in observed or last_failed_cas_end >= op.invoke_ns:
            out.append(op)
    return out


def _overlapping(ops: Sequence[Operation], target: Operation) -> list[Operation]:
    end = target.complete_ns
    out = []
    for op in ops:
        if op.id == target.id:
            continue
        op_end = op.complete_ns
        if (op_end is None or op_end >= target.invoke_ns) and (end is None or op.invoke_ns <= end):
            out.append(op)
    return out


class _Search:
    """Wing & Gong / Lowe over a doubly linked list of entries (arrays: ``nxt``/``prv``; 0 is the head)."""

    def __init__(self, ops: Sequence[Operation], model: Model) -> None:
        self.ops = list(ops)
        self.model = model
        entries: list[tuple[int, int, int, bool]] = []  # (time, 0 call / 1 return, op index, is_call)
        for i, op in enumerate(self.ops):
            entries.append((op.invoke_ns, 0, i, True))
            if op.complete_ns is not None:
                entries.append((op.complete_ns, 1, i, False))
        entries.sort()
        n = len(entries)
        # Entry e (1..n) is entries[e-1]; entry 0 is the head sentinel; n+1 means "end".
        self.end = n + 1
        self.nxt = [*range(1, n + 2), n + 1]
        self.prv = [0, *range(0, n + 1)]
        self.entry_op = [-1, *(op_index for _, _, op_index, _ in entries)]
        self.is_call = [False, *(is_call for _, _, _, is_call in entries)]
        self.call_entry = [0] * len(self.ops)
        self.return_entry = [0] * len(self.ops)  # 0: none (indeterminate)
        for e, (_, _, op_index, is_call) in enumerate(entries, start=1):
            if is_call:
                self.call_entry[op_index] = e
            else:
                self.return_entry[op_index] = e
        self.required = sum(1 for op in self.ops if op.complete_ns is not None)
        self.steps = 0
        self.best_depth = -1
        self.best_stuck: Operation | None = None
        self.best_order: list[Operation] = []

    def _unlink(self, e: int) -> None:
        self.nxt[self.prv[e]] = self.nxt[e]
        self.prv[self.nxt[e]] = self.prv[e]

    def _relink(self, e: int) -> None:
        self.nxt[self.prv[e]] = e
        self.prv[self.nxt[e]] = e

    def _lift(self, op_index: int) -> None:
        self._unlink(self.call_entry[op_index])
        if self.return_entry[op_index]:
            self._unlink(self.return_entry[op_index])

    def _unlift(self, op_index: int) -> None:
        if self.return_entry[op_index]:
            self._relink(self.return_entry[op_index])
        self._relink(self.call_entry[op_index])

    def run(self, max_steps: int) -> bool | None:
        model = self.model
        state: Hashable = model.initial()
        linearized = 0  # bitmask of linearized operations
        done = 0  # linearized operations that had to be (completed ones)
        stack: list[tuple[int, Hashable]] = []  # (op index, state before it)
        seen: set[tuple[int, Hashable]] = set()
        nxt, end, is_call, entry_op = self.nxt, self.end, self.is_call, self.entry_op
        e = nxt[0]
        while done < self.required:
            self.steps += 1
            if self.steps > max_steps:
                return None
            if e != end and is_call[e]:
                i = entry_op[e]
                after = model.step(state, self.ops[i])
                if after is not IMPOSSIBLE:
                    mask = linearized | (1 << i)
                    config = (mask, after)
                    if config not in seen:
                        seen.add(config)
                        stack.append((i, state))
                        state, linearized = after, mask
                        if self.return_entry[i]:
                            done += 1
                        self._lift(i)
                        e = nxt[0]
                        continue
                e = nxt[e]
                continue
            # A return entry (or the end): its operation was not linearized in time. Backtrack.
            if e != end and len(stack) > self.best_depth:
                self.best_depth = len(stack)
                self.best_stuck = self.ops[entry_op[e]]
                self.best_order = [self.ops[i] for i, _ in stack]
            if not stack:
                return False
            i, state = stack.pop()
            linearized &= ~(1 << i)
            if self.return_entry[i]:
                done -= 1
            self._unlift(i)
            e = nxt[self.call_entry[i]]
        return True


__all__ = [
    "DEFAULT_MAX_STEPS",
    "IMPOSSIBLE",
    "CasRegister",
    "CheckResult",
    "Event",
    "HistoryRecorder",
    "KeyResult",
    "Model",
    "NotLinearizableError",
    "OpKind",
    "Operation",
    "Outcome",
    "check",
    "check_key",
    "load_events",
    "operations_of",
]
