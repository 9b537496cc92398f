"""Issue 17: an error stored as a write result (the dedupe table, hence snapshots) is an ErrorInfo now; a snapshot
whose error results are in the form the landed code wrote (no ``retryable``) restores and answers the same."""

from __future__ import annotations

from typing import Any

import msgspec
from coord_fixtures import ALICE, Harness

from feitian.coord.core import CoordStateMachine, SetNode, encode_command
from feitian.errors import ConflictError


def _as_landed_code_wrote_it(value: Any) -> tuple[Any, int]:
    """``value`` (a generically decoded snapshot) with every stored error result in the old form; the count."""
    if isinstance(value, dict):
        count = 0
        if value.get("result") == "error" and "retryable" in value:
            value = {k: v for k, v in value.items() if k != "retryable"}
            count += 1
        out = {}
        for key, item in value.items():
            out[key], n = _as_landed_code_wrote_it(item)
            count += n
        return out, count
    if isinstance(value, list):
        pairs = [_as_landed_code_wrote_it(item) for item in value]
        return [item for item, _ in pairs], sum(n for _, n in pairs)
    return value, 0


def test_a_snapshot_with_error_results_of_the_landed_code_restores_and_answers_the_same() -> None:
    h = Harness()
    h.create("/a", b"1")
    refused = h.set("/a", b"x", expected_version=2, client_id="c", request_seq=1)
    assert isinstance(refused, ConflictError)
    old, stored_errors = _as_landed_code_wrote_it(msgspec.msgpack.decode(h.sm.snapshot()))
    assert stored_errors == 1  # the refused write's result, kept for its retries
    restored = CoordStateMachine()
    restored.restore(msgspec.msgpack.encode(old))
    index = restored.applied_index + 1
    assert restored.apply(index, encode_command(SetNode(principal=ALICE, path="/a", value=b"2"))).stat.version == 2
    # At version 2 the same request would succeed if it were applied again: the stored error answers instead.
    again = SetNode(principal=ALICE, path="/a", value=b"x", expected_version=2, client_id="c", request_seq=1)
    retry = restored.apply(index + 1, encode_command(again))
    assert isinstance(retry, ConflictError)
    assert retry.message == refused.message and retry.fields == refused.fields
