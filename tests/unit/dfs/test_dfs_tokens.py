"""What a chunk token names and how a chunk server checks a request against it."""

from __future__ import annotations

import pytest

from feitian.dfs.core import (
    OPERATION_RIGHTS,
    ChunkRight,
    ChunkTokenClaims,
    check_chunk_access,
    chunk_resource,
    claims_from_grant,
    file_resource,
    parse_chunk_resource,
    token_expiry,
)
from feitian.errors import InvalidArgumentError, PermissionDeniedError
from feitian.security.core import Right, parse_resource

NOW = 1_000_000


def test_resources_are_valid_zhongkui_resources() -> None:
    assert chunk_resource(17, 3) == "dfs-chunk:17/v3" and parse_chunk_resource("dfs-chunk:17/v3") == (17, 3)
    chunk = parse_resource(chunk_resource(17, 3))
    assert parse_resource("dfs-chunk:17").covers(chunk) and parse_resource("dfs-chunk:*").covers(chunk)
    assert not parse_resource("dfs-chunk:1").covers(chunk)
    assert parse_resource("dfs:/logs").covers(parse_resource(file_resource("/logs/a")))
    with pytest.raises(InvalidArgumentError):
        parse_chunk_resource("dfs-chunk:17")
    with pytest.raises(InvalidArgumentError):
        chunk_resource(-1, 0)
    known = {r.value for r in Right}
    assert all(set(rights) <= known for rights in OPERATION_RIGHTS.values())


def test_write_tokens_never_outlive_the_lease() -> None:
    assert token_expiry(NOW, 100) == NOW + 100
    assert token_expiry(NOW, 100, lease_expires_ns=NOW + 40) == NOW + 40
    with pytest.raises(InvalidArgumentError):
        token_expiry(NOW, 0)


def test_claims_from_a_verified_grant() -> None:
    claims = claims_from_grant(["dfs-chunk:5/v2"], [Right.READ, Right.LIST], NOW + 10, "cs1")
    assert claims == ChunkTokenClaims(5, 2, frozenset({ChunkRight.READ}), NOW + 10, "cs1")
    assert claims_from_grant(["dfs-chunk:5/v2"], ["admin"], NOW, "cs1").rights == frozenset(ChunkRight)
    with pytest.raises(PermissionDeniedError, match="exactly one"):
        claims_from_grant(["dfs-chunk:5/v2", "dfs-chunk:6/v1"], ["read"], NOW, "cs1")


@pytest.mark.parametrize(
    ("kwargs", "reason"),
    [
        ({"server_id": "cs2"}, "wrong_server"),
        ({"chunk_id": 6}, "wrong_chunk"),
        ({"version": 3}, "wrong_chunk"),
        ({"right": ChunkRight.WRITE}, "missing_right"),
        ({"now_ns": NOW + 10}, "expired"),
    ],
)
def test_check_chunk_access_refusals(kwargs: dict[str, object], reason: str) -> None:
    claims = ChunkTokenClaims(5, 2, frozenset({ChunkRight.READ}), NOW + 10, "cs1")
    request: dict[str, object] = {
        "server_id": "cs1",
        "chunk_id": 5,
        "version": 2,
        "right": ChunkRight.READ,
        "now_ns": NOW,
    }
    check_chunk_access(claims, **request)  # type: ignore[arg-type]
    request.update(kwargs)
    with pytest.raises(PermissionDeniedError) as info:
        check_chunk_access(claims, **request)  # type: ignore[arg-type]
    assert info.value.reason == reason
