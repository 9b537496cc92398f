"""A small driver for the coordination state machine in unit tests: commands go through msgpack like a log."""

from __future__ import annotations

from typing import Any, TypeVar

from feitian.coord.core import (
    Command,
    CoordLimits,
    CoordStateMachine,
    CreateNode,
    CreateSession,
    DeleteNode,
    SetNode,
    encode_command,
)
from feitian.errors import FeitianError

T = TypeVar("T")
ALICE = "alice-principal"
BOB = "bob-principal"


class Harness:
    def __init__(self, limits: CoordLimits | None = None) -> None:
        self.sm = CoordStateMachine(limits) if limits is not None else CoordStateMachine()
        self.index = 0

    def apply(self, command: Command) -> Any:
        self.index += 1
        return self.sm.apply(self.index, encode_command(command))

    def ok(self, command: Command, kind: type[T]) -> T:
        result = self.apply(command)
        assert isinstance(result, kind), f"expected {kind.__name__}, got {result!r}"
        return result

    def err(self, command: Command, kind: type[FeitianError]) -> FeitianError:
        result = self.apply(command)
        assert isinstance(result, kind), f"expected {kind.__name__}, got {result!r}"
        return result

    # shorthands
    def create(self, path: str, value: bytes = b"", principal: str = ALICE, **kw: Any) -> Any:
        return self.apply(CreateNode(principal=principal, path=path, value=value, **kw))

    def set(self, path: str, value: bytes, principal: str = ALICE, **kw: Any) -> Any:
        return self.apply(SetNode(principal=principal, path=path, value=value, **kw))

    def delete(self, path: str, principal: str = ALICE, **kw: Any) -> Any:
        return self.apply(DeleteNode(principal=principal, path=path, **kw))

    def session(self, principal: str = ALICE, ttl_ms: int = 10_000, **kw: Any) -> int:
        from feitian.coord.core import SessionCreated

        return self.ok(CreateSession(principal=principal, ttl_ms=ttl_ms, **kw), SessionCreated).session_id


def fingerprint(sm: CoordStateMachine) -> bytes:
    """The whole state without the applied log index: equal iff the visible state is equal."""
    import msgspec

    from feitian.coord.core.snapshot import Snapshot

    snapshot = msgspec.msgpack.decode(sm.snapshot(), type=Snapshot)
    return msgspec.msgpack.encode(msgspec.structs.replace(snapshot, applied_index=0))
