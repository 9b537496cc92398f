"""The error tree: stable wire codes, round trips through the wire form, CLI exit codes."""

from __future__ import annotations

import pickle

import msgspec
import pytest

from feitian import errors
from feitian.rpc.core.messages import ErrorInfo


def all_error_classes() -> list[type[errors.FeitianError]]:
    out, todo = [], [errors.FeitianError]
    while todo:
        klass = todo.pop()
        out.append(klass)
        todo.extend(klass.__subclasses__())
    return out


def test_codes_are_unique_and_registered() -> None:
    classes = all_error_classes()
    codes = [c.code for c in classes]
    assert len(codes) == len(set(codes))
    for klass in classes:
        assert errors.error_class_for_code(klass.code) is klass


def test_unknown_code_maps_to_the_root() -> None:
    assert errors.error_class_for_code("from-a-newer-peer") is errors.FeitianError


@pytest.mark.parametrize("klass", all_error_classes())
def test_round_trip_through_the_wire_form(klass: type[errors.FeitianError]) -> None:
    exc = klass("create /locks/a: node already exists", hint="try another name", owner="0x1f", n=3)
    info = msgspec.msgpack.decode(msgspec.msgpack.encode(ErrorInfo.from_exception(exc)), type=ErrorInfo)
    back = info.to_exception()
    assert type(back) is klass
    assert back.message.startswith("create /locks/a: node already exists")
    assert back.hint == "try another name"
    assert back.fields["owner"] == "0x1f" and back.n == 3


def test_not_leader_carries_its_hint() -> None:
    exc = errors.NotLeaderError("propose: not the leader", leader_hint="tcp://10.0.0.2:7000")
    assert exc.leader_hint == "tcp://10.0.0.2:7000" and exc.retryable
    assert isinstance(exc, errors.UnavailableError)


def test_config_error_lists_every_problem() -> None:
    exc = errors.ConfigError("invalid config", problems=["a must be > 0", "b is unknown"])
    assert "a must be > 0" in str(exc) and "b is unknown" in str(exc)


def test_pickle_keeps_class_and_fields() -> None:
    exc = pickle.loads(pickle.dumps(errors.OverloadedError("lane full", lane="bulk")))
    assert type(exc) is errors.OverloadedError and exc.lane == "bulk"


def test_exit_codes_follow_the_cli_contract() -> None:
    assert errors.UnavailableError("x").exit_code == 3
    assert errors.NotLeaderError("x").exit_code == 3
    assert errors.NotFoundError("x").exit_code == 4
    assert errors.AlreadyExistsError("x").exit_code == 5
    assert errors.ConflictError("x").exit_code == 5
    assert errors.PermissionDeniedError("x").exit_code == 6
    assert errors.UnauthenticatedError("x").exit_code == 6
    assert errors.DeadlineExceededError("x").exit_code == 7
    assert errors.InvalidArgumentError("x").exit_code == 2
    assert errors.InternalError("x").exit_code == 1


def test_unknown_attribute_is_an_attribute_error() -> None:
    with pytest.raises(AttributeError):
        _ = errors.FeitianError("x").nothing_here
