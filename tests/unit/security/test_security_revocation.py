"""The revocation list and the verifier's view with its staleness bound."""

from __future__ import annotations

import pytest

from feitian.errors import DataCorruptionError, UnavailableError
from feitian.security import DEFAULT_MAX_STALENESS_NS, RevocationList, RevocationView

ID_A, ID_B = b"a" * 16, b"b" * 16


def test_each_change_is_a_new_version() -> None:
    empty = RevocationList()
    one = empty.revoke_id(ID_A, until_ns=100)
    two = one.revoke_holder("p1")
    assert (empty.version, one.version, two.version) == (0, 1, 2)
    assert not empty.is_id_revoked(ID_A, 0)  # immutable: the old list is unchanged
    assert two.is_id_revoked(ID_A, 99) and not two.is_id_revoked(ID_A, 100)
    assert two.is_holder_revoked("p1", 10**30)  # holder entries default to forever
    assert two.first_revoked_holder(["p0", "p1"], 0) == "p1"


def test_merge_is_a_union_keeping_later_deadlines() -> None:
    a = RevocationList().revoke_id(ID_A, until_ns=100).revoke_holder("p1", until_ns=50)
    b = RevocationList().revoke_id(ID_A, until_ns=300).revoke_id(ID_B, until_ns=10).revoke_holder("p1")
    merged = a.merge(b)
    assert merged.version == 3
    assert merged.ids == {ID_A: 300, ID_B: 10}
    assert merged.holders == {"p1": None}
    assert merged.ids == b.merge(a).ids and merged.holders == b.merge(a).holders


def test_pruning_drops_only_useless_entries() -> None:
    rl = RevocationList().revoke_id(ID_A, until_ns=100).revoke_id(ID_B, until_ns=300).revoke_holder("p", until_ns=50)
    pruned = rl.pruned(200)
    assert pruned.ids == {ID_B: 300} and pruned.holders == {}
    assert pruned.version == rl.version


def test_bytes_round_trip_and_corruption() -> None:
    rl = RevocationList().revoke_id(ID_A, until_ns=100).revoke_holder("p1").revoke_holder("p2", until_ns=7)
    again = RevocationList.from_bytes(rl.to_bytes())
    assert (again.version, again.ids, again.holders) == (rl.version, rl.ids, rl.holders)
    for bad in (b"", b"\xff\x00", rl.to_bytes()[:-3]):
        with pytest.raises(DataCorruptionError):
            RevocationList.from_bytes(bad)


def test_view_refuses_when_stale() -> None:
    view = RevocationView(max_staleness_ns=30)
    with pytest.raises(UnavailableError) as info:
        view.current(0)
    assert info.value.fields["reason"] == "revocations_stale"
    first = RevocationList().revoke_holder("p1")
    assert view.update(first, now_ns=100)
    assert view.current(130) is first
    with pytest.raises(UnavailableError):
        view.current(131)
    assert view.update(RevocationList(version=1), now_ns=140)  # same version: a refresh, keeps the instance
    assert view.current(150) is first
    assert not view.update(RevocationList(), now_ns=200)  # older version: ignored, not a refresh
    with pytest.raises(UnavailableError):
        view.current(200)
    assert DEFAULT_MAX_STALENESS_NS == 30 * 10**9
