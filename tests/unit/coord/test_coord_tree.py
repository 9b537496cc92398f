"""Every tree operation and every error it can return (NUWA-2, NUWA-4)."""

from __future__ import annotations

import pytest
from coord_fixtures import ALICE, BOB, Harness, fingerprint
from hypothesis import given, settings
from hypothesis import strategies as st

from feitian.coord.core import (
    CoordLimits,
    Created,
    CreateNode,
    Deleted,
    Selector,
    Updated,
)
from feitian.errors import (
    AlreadyExistsError,
    ConflictError,
    InvalidArgumentError,
    MessageTooLargeError,
    NotFoundError,
    OverloadedError,
)


@pytest.fixture
def h() -> Harness:
    return Harness()


# -- create ---------------------------------------------------------------------------------------------------


def test_create_file_records_creator_revisions_and_version(h: Harness) -> None:
    result = h.create("/config", b"v1", principal=BOB)
    assert isinstance(result, Created)
    assert result.revision == 1 == h.sm.revision
    stat = result.stat
    assert (stat.path, stat.creator, stat.create_revision, stat.mod_revision, stat.version) == ("/config", BOB, 1, 1, 1)
    assert stat.value_bytes == 2 and stat.ephemeral_owner == 0 and not stat.is_directory
    got = h.sm.get("/config")
    assert got.value == b"v1" and got.stat == stat and got.revision == 1


def test_create_directory_then_entries(h: Harness) -> None:
    assert isinstance(h.create("/apps/"), Created)
    assert isinstance(h.create("/apps/web"), Created)
    assert isinstance(h.create("/apps/db/"), Created)
    listing = h.sm.list("/apps/")
    assert [c.path for c in listing.children] == ["/apps/db/", "/apps/web"]
    assert listing.directory.children == 2 and listing.revision == 3


def test_create_existing_names_the_node(h: Harness) -> None:
    h.create("/x")
    error = h.create("/x")
    assert isinstance(error, AlreadyExistsError)
    assert error.message == "create /x: node already exists"
    assert h.sm.revision == 1


def test_create_existing_ephemeral_names_the_owner_session(h: Harness) -> None:
    for _ in range(0x1E):
        h.session()
    session = h.session()
    assert session == 0x1F
    h.create("/locks/", principal=ALICE)
    h.create("/locks/job-17", ephemeral=True, session_id=session)
    error = h.create("/locks/job-17", principal=BOB)
    assert isinstance(error, AlreadyExistsError)
    assert error.message == "create /locks/job-17: node already exists (owner session 0x1f)"
    assert error.fields["owner_session"] == 0x1F


def test_file_and_directory_of_one_name_exclude_each_other(h: Harness) -> None:
    h.create("/a")
    error = h.create("/a/")
    assert isinstance(error, AlreadyExistsError) and "/a already exists" in error.message
    h.create("/b/")
    assert isinstance(h.create("/b"), AlreadyExistsError)


def test_create_needs_the_parent_directory(h: Harness) -> None:
    error = h.create("/a/b/c")
    assert isinstance(error, NotFoundError)
    assert error.message == "create /a/b/c: parent directory /a/b/ does not exist"
    h.create("/f")
    error = h.create("/f/x")
    assert isinstance(error, NotFoundError) and "(/f is a file)" in error.message


def test_create_with_parents_makes_every_missing_directory_at_one_revision(h: Harness) -> None:
    h.create("/a/")
    result = h.create("/a/b/c/d", b"x", parents=True)
    assert isinstance(result, Created)
    assert result.parents == ("/a/b/", "/a/b/c/")
    assert h.sm.stat("/a/b/c/").stat.create_revision == result.revision == 2
    batch = h.sm.events_since(1)
    assert [e.path for e in batch.events] == ["/a/b/", "/a/b/c/", "/a/b/c/d"]  # type: ignore[union-attr]


def test_create_with_parents_blocked_by_a_file_changes_nothing(h: Harness) -> None:
    h.create("/a/")
    h.create("/a/f")
    before = fingerprint(h.sm)
    error = h.create("/a/f/g/h", parents=True)
    assert isinstance(error, AlreadyExistsError) and "/a/f already exists" in error.message
    assert fingerprint(h.sm) == before


def test_value_over_one_megabyte_is_refused_clearly(h: Harness) -> None:
    assert isinstance(h.create("/big", b"x" * (1 << 20)), Created)
    error = h.create("/bigger", b"x" * ((1 << 20) + 1))
    assert isinstance(error, MessageTooLargeError)
    assert error.message == "create /bigger: value of 1048577 bytes exceeds 1048576 bytes"
    assert error.fields["limit"] == 1 << 20 and error.fields["size"] == (1 << 20) + 1
    assert isinstance(h.set("/big", b"x" * ((1 << 20) + 1)), MessageTooLargeError)


@pytest.mark.parametrize(
    ("command", "fragment"),
    [
        (CreateNode(principal=ALICE, path="/d/", value=b"x"), "a directory holds no value"),
        (CreateNode(principal=ALICE, path="/e", ephemeral=True), "an ephemeral node needs a session"),
        (CreateNode(principal=ALICE, path="/e/", ephemeral=True, session_id=1), "a directory cannot be ephemeral"),
        (CreateNode(principal=ALICE, path="/"), "root"),
        (CreateNode(principal=ALICE, path="relative"), "absolute"),
        (CreateNode(principal=ALICE, path="/x", client_id="c"), "request_seq must be >= 1"),
        (CreateNode(principal=ALICE, path="/x", client_id="c\n", request_seq=1), "client_id"),
        (CreateNode(principal=ALICE, path="/x", session_id=-1), "session_id"),
        (CreateNode(principal="p" * 300, path="/x"), "principal"),
    ],
)
def test_invalid_creates(h: Harness, command: CreateNode, fragment: str) -> None:
    error = h.apply(command)
    assert isinstance(error, InvalidArgumentError)
    assert fragment in error.message
    assert h.sm.revision == 0


def test_node_count_bound_is_an_overload() -> None:
    h = Harness(CoordLimits(max_nodes=3))
    h.create("/a")
    h.create("/b")
    error = h.create("/c")
    assert isinstance(error, OverloadedError) and "limit" in error.message
    h.delete("/a")
    assert isinstance(h.create("/c"), Created)


# -- sequential -------------------------------------------------------------------------------------------------


def test_sequential_names_are_zero_padded_and_monotonic_even_after_deletes(h: Harness) -> None:
    h.create("/q/")
    first = h.create("/q/job-", sequential=True)
    second = h.create("/q/job-", sequential=True)
    assert (first.stat.path, second.stat.path) == ("/q/job-0000000000", "/q/job-0000000001")
    h.delete("/q/job-0000000001")
    h.delete("/q/job-0000000000")
    third = h.create("/q/other-", sequential=True)
    assert third.stat.path == "/q/other-0000000002"
    assert h.sm.stat("/q/").stat.sequence == 3
    directory = h.create("/q/dir-/", sequential=True)
    assert directory.stat.path == "/q/dir-0000000003/"


def test_sequential_collision_with_an_existing_name_changes_nothing(h: Harness) -> None:
    h.create("/q/")
    h.create("/q/n0000000000")
    before = fingerprint(h.sm)
    assert isinstance(h.create("/q/n", sequential=True), AlreadyExistsError)
    assert fingerprint(h.sm) == before  # the counter did not move either
    assert h.create("/q/m", sequential=True).stat.path == "/q/m0000000000"


def test_sequential_name_must_fit_the_name_bound() -> None:
    h = Harness(CoordLimits(max_name_bytes=13))
    assert isinstance(h.create("/abc", sequential=True), Created)
    error = h.create("/abcd", sequential=True)
    assert isinstance(error, InvalidArgumentError) and "exceeds 13 bytes" in error.message


def test_sequence_exhaustion_is_refused(h: Harness) -> None:
    h.create("/q/")
    h.sm.tree.nodes["/q/"].sequence = 10**10
    error = h.create("/q/x", sequential=True)
    assert isinstance(error, ConflictError) and "exhausted" in error.message


# -- set ---------------------------------------------------------------------------------------------------------


def test_set_bumps_version_and_mod_revision(h: Harness) -> None:
    h.create("/a", b"1")
    h.create("/b")
    result = h.set("/a", b"2")
    assert isinstance(result, Updated)
    assert (result.stat.version, result.stat.mod_revision, result.stat.create_revision) == (2, 3, 1)
    assert h.sm.get("/a").value == b"2"


def test_set_with_expected_version(h: Harness) -> None:
    h.create("/a", b"1")
    assert isinstance(h.set("/a", b"2", expected_version=1), Updated)
    error = h.set("/a", b"3", expected_version=1)
    assert isinstance(error, ConflictError)
    assert error.message == "set /a: version 1 expected, found 2"
    assert (error.fields["expected"], error.fields["found"]) == (1, 2)
    assert h.sm.get("/a").value == b"2"
    assert isinstance(h.set("/a", b"3", expected_version=0), InvalidArgumentError)


def test_set_errors(h: Harness) -> None:
    assert isinstance(h.set("/missing", b""), NotFoundError)
    h.create("/d/")
    error = h.set("/d/", b"")
    assert isinstance(error, InvalidArgumentError) and "a directory holds no value" in error.message
    error = h.set("/d", b"x")
    assert isinstance(error, NotFoundError) and "/d/ is a directory" in error.message and error.hint == "use /d/"


# -- delete ------------------------------------------------------------------------------------------------------


def test_delete_file_and_empty_directory(h: Harness) -> None:
    h.create("/d/")
    h.create("/d/f", b"x")
    result = h.delete("/d/f")
    assert isinstance(result, Deleted) and result.stat.path == "/d/f" and result.revision == 3
    assert not h.sm.exists("/d/f").exists
    assert isinstance(h.delete("/d/"), Deleted)
    assert h.sm.list("/").children == ()


def test_delete_refuses_a_non_empty_directory(h: Harness) -> None:
    h.create("/d/")
    h.create("/d/f")
    error = h.delete("/d/")
    assert isinstance(error, ConflictError)
    assert error.message == "delete /d/: directory not empty (1 entry)"
    assert h.sm.exists("/d/").exists


def test_delete_with_expected_version_and_other_errors(h: Harness) -> None:
    h.create("/a")
    h.set("/a", b"x")
    error = h.delete("/a", expected_version=1)
    assert isinstance(error, ConflictError) and error.fields["found"] == 2
    assert isinstance(h.delete("/a", expected_version=2), Deleted)
    assert isinstance(h.delete("/a"), NotFoundError)
    assert isinstance(h.delete("/"), InvalidArgumentError)


# -- reads -------------------------------------------------------------------------------------------------------


def test_reads_return_their_revision_and_refuse_bad_input(h: Harness) -> None:
    h.create("/a", b"x")
    assert h.sm.stat("/a").revision == 1
    assert h.sm.exists("/nope").stat is None and h.sm.exists("/nope").revision == 1
    assert h.sm.get("/").stat.children == 1
    with pytest.raises(NotFoundError, match="get /b: node does not exist"):
        h.sm.get("/b")
    with pytest.raises(NotFoundError):
        h.sm.stat("/b")
    with pytest.raises(InvalidArgumentError, match="not a directory path"):
        h.sm.list("/a")
    with pytest.raises(NotFoundError):
        h.sm.list("/z/")
    with pytest.raises(InvalidArgumentError):
        h.sm.get("no-slash")
    with pytest.raises(InvalidArgumentError, match="limit"):
        h.sm.list("/", limit=0)


def test_list_pages_in_name_order() -> None:
    h = Harness(CoordLimits(max_list_children=3))
    h.create("/d/")
    names = ["b", "a/", "c", "a-x", "a0", "e"]
    for name in names:
        h.create("/d/" + name)
    page = h.sm.list("/d/")
    assert [c.path for c in page.children] == ["/d/a-x", "/d/a/", "/d/a0"] and page.more
    page = h.sm.list("/d/", start_after=page.children[-1].path)
    assert [c.path for c in page.children] == ["/d/b", "/d/c", "/d/e"] and not page.more
    page = h.sm.list("/d/", start_after="/d/a/zzz", limit=1)
    assert [c.path for c in page.children] == ["/d/a0"] and page.more


def test_a_read_of_a_missing_node_says_at_which_revision_it_was_missing(h: Harness) -> None:
    """A reader that finds nothing watches for the node's creation from the revision of that answer; one read
    later (a separate request) could be past the creation and miss it."""
    h.create("/other", b"x")
    for read in (lambda: h.sm.list("/d/"), lambda: h.sm.get("/d/f"), lambda: h.sm.stat("/d/f")):
        with pytest.raises(NotFoundError) as caught:
            read()
        assert caught.value.fields["revision"] == h.sm.revision == 1


def test_select_node_children_and_subtree_in_path_order(h: Harness) -> None:
    for path in ["/s/", "/s/a", "/s/a-x/", "/s/a-x/k", "/s/b/", "/s/b/c/", "/s/b/c/d", "/s/b0", "/t"]:
        h.create(path)
    assert [n.path for n in h.sm.select(Selector.node("/s/a")).nodes] == ["/s/a"]
    assert h.sm.select(Selector.node("/s/zz")).nodes == ()
    children = [n.path for n in h.sm.select(Selector.children("/s/")).nodes]
    assert children == ["/s/", "/s/a", "/s/a-x/", "/s/b/", "/s/b0"]
    every = [n.path for n in h.sm.select(Selector.subtree("/s/")).nodes]
    assert every == sorted(every) == ["/s/", "/s/a", "/s/a-x/", "/s/a-x/k", "/s/b/", "/s/b/c/", "/s/b/c/d", "/s/b0"]
    # Paging from any point gives the rest, in order.
    for cut in range(len(every)):
        rest = [n.path for n in h.sm.select(Selector.subtree("/s/"), start_after=every[cut]).nodes]
        assert rest == every[cut + 1 :]
    page = h.sm.select(Selector.subtree("/s/"), limit=3)
    assert len(page.nodes) == 3 and page.more
    with pytest.raises(InvalidArgumentError, match="directory path"):
        h.sm.select(Selector.subtree("/s/a"))


# -- big and shrinking directories ------------------------------------------------------------------------------


@settings(max_examples=60, deadline=None)
@given(st.lists(st.tuples(st.booleans(), st.integers(0, 79)), min_size=1, max_size=300))
def test_directory_entries_stay_sorted_as_they_grow_past_and_shrink_below_the_small_bound(
    ops: list[tuple[bool, int]],
) -> None:
    """A directory's entries move from a tuple to a SortedList past SMALL_DIRECTORY and back when it shrinks; listing
    (in pages), walking, deleting and a snapshot round trip agree with a plain sorted model throughout."""
    h = Harness()
    h.create("/d/")
    h.create("/d/sub/")
    h.create("/d/sub/x")
    model = {"/d/sub/"}
    for add, n in ops:
        path = f"/d/e{n:02d}" + ("/" if n % 5 == 0 else "")
        if add and path not in model:
            assert isinstance(h.create(path), Created)
            model.add(path)
        elif not add and path in model:
            assert isinstance(h.delete(path), Deleted)
            model.remove(path)
    expected = sorted(model)
    listed: list[str] = []
    start_after = ""
    while True:
        page = h.sm.list("/d/", start_after=start_after, limit=7)
        listed.extend(c.path for c in page.children)
        if not page.more:
            break
        start_after = listed[-1]
    assert listed == expected
    walked = [s.path for s in h.sm.select(Selector.subtree("/d/"), limit=1000).nodes]
    assert walked == sorted(["/d/", "/d/sub/x", *expected])
    middle = expected[len(expected) // 2]
    after = [s.path for s in h.sm.select(Selector.subtree("/d/"), start_after=middle, limit=1000).nodes]
    assert after == [p for p in walked if p > middle]
    restored = Harness()
    restored.sm.restore(h.sm.snapshot())
    assert [c.path for c in restored.sm.list("/d/", limit=1000).children] == expected
    assert restored.sm.snapshot() == h.sm.snapshot()
