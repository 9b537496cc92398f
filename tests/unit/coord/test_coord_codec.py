"""Commands on the log: encoding, refusal of malformed entries, and determinism across replicas."""

from __future__ import annotations

import hashlib
import subprocess
import sys
from pathlib import Path

import msgspec
from coord_fixtures import ALICE, Harness

from feitian.coord.core import (
    CheckOp,
    CoordStateMachine,
    CreateNode,
    CreateOp,
    CreateSession,
    DeleteOp,
    ExpireSessions,
    SetOp,
    StartLeaderTerm,
    Transaction,
    decode_command,
    encode_command,
    validate_command,
)
from feitian.coord.core.limits import DEFAULT_LIMITS
from feitian.errors import InvalidArgumentError


def workload() -> list[bytes]:
    """A log with sessions, ephemerals in several directories, transactions, retries and an expiry."""
    log = [encode_command(StartLeaderTerm(epoch=1))]
    for n in range(1, 6):
        log.append(encode_command(CreateSession(principal=f"p{n}", ttl_ms=5_000, client_id=f"c{n}", request_seq=1)))
    for n in range(1, 6):
        for d in ("/x/", "/y/z/", "/w/"):
            log.append(
                encode_command(
                    CreateNode(
                        principal=f"p{n}",
                        path=f"{d}e-",
                        ephemeral=True,
                        sequential=True,
                        parents=True,
                        session_id=n,
                        client_id=f"c{n}",
                        request_seq=len(log) + 1,
                    )
                )
            )
    ops = (CreateOp(path="/t/", parents=True), CreateOp(path="/t/a", value=b"1"), SetOp(path="/t/a", value=b"2"))
    log.append(encode_command(Transaction(principal=ALICE, ops=ops)))
    log.append(
        encode_command(Transaction(principal=ALICE, ops=(CheckOp(path="/t/a", version=9), DeleteOp(path="/t/a"))))
    )
    log.append(log[8])  # a retry
    log.append(encode_command(ExpireSessions(session_ids=(4, 2, 5), epoch=1)))
    return log


def run(log: list[bytes]) -> CoordStateMachine:
    sm = CoordStateMachine()
    for index, entry in enumerate(log, 1):
        sm.apply(index, entry)
    return sm


def test_commands_round_trip_through_msgpack() -> None:
    command = Transaction(
        principal=ALICE,
        client_id="c",
        request_seq=3,
        session_id=2,
        ops=(CreateOp(path="/a", value=b"\x00", ephemeral=True), CheckOp(path="/b", exists=False)),
    )
    assert decode_command(encode_command(command)) == command
    validate_command(command, DEFAULT_LIMITS)


def test_a_malformed_entry_is_an_error_value_and_changes_nothing() -> None:
    h = Harness()
    for data in [b"", b"\xc1", msgspec.msgpack.encode({"cmd": "nope"}), msgspec.msgpack.encode({"cmd": "create"})]:
        result = h.sm.apply(7, data)
        assert isinstance(result, InvalidArgumentError) and result.message.startswith("coord command: cannot decode")
        assert h.sm.last_applied.result is result and h.sm.applied_index == 7
    assert h.sm.revision == 0 and len(h.sm.tree.nodes) == 1


def test_replicas_applying_the_same_log_agree_byte_for_byte() -> None:
    log = workload()
    one, two = run(log), run(log)
    assert one.snapshot() == two.snapshot()
    assert one.revision == 17  # 15 creates (+ parents), 1 transaction, 1 expiry; the failed txn and retry: none
    assert [c.path for c in one.list("/x/").children] == ["/x/e-0000000000", "/x/e-0000000002"]


_CHILD = """
import hashlib, sys
sys.path.insert(0, sys.argv[1])
from test_coord_codec import run, workload
print(hashlib.sha256(run(workload()).snapshot()).hexdigest())
"""


def test_the_state_does_not_depend_on_the_hash_seed() -> None:
    """Set iteration order differs between processes; nothing the replicas agree on may depend on it."""
    here = str(Path(__file__).parent)
    digests = {
        subprocess.run(
            [sys.executable, "-c", _CHILD, here],
            env={"PYTHONHASHSEED": seed, "PATH": ""},
            capture_output=True,
            text=True,
            check=True,
            timeout=60,
        ).stdout.strip()
        for seed in ("1", "2")
    }
    assert digests == {hashlib.sha256(run(workload()).snapshot()).hexdigest()}
