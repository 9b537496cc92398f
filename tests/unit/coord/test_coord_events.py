"""Events, selectors, the bounded history and resuming from a revision (NUWA-5)."""

from __future__ import annotations

import pytest
from coord_fixtures import Harness

from feitian.coord.core import (
    Compacted,
    CoordLimits,
    Event,
    EventBatch,
    EventHistory,
    EventKind,
    Selector,
    SubscriptionIndex,
)
from feitian.errors import InvalidArgumentError, OverloadedError

C, U, D = EventKind.CREATED, EventKind.CHANGED, EventKind.DELETED


def batch(result: EventBatch | Compacted) -> EventBatch:
    assert isinstance(result, EventBatch), result
    return result


def test_every_change_yields_one_event_with_its_revision() -> None:
    h = Harness()
    h.create("/a/")
    h.create("/a/f", b"1")
    h.set("/a/f", b"2")
    h.delete("/a/f")
    h.create("/a/f")  # ... and a failure yields none
    events = batch(h.sm.events_since(0)).events
    assert [(e.revision, e.kind, e.path) for e in events] == [
        (1, C, "/a/"),
        (2, C, "/a/f"),
        (3, U, "/a/f"),
        (4, D, "/a/f"),
        (5, C, "/a/f"),
    ]
    assert events[1].parent == "/a/"


def test_selectors_match_node_children_and_subtree() -> None:
    events = [
        Event(1, C, "/a/"),
        Event(1, C, "/a/x"),
        Event(1, C, "/a/b/"),
        Event(1, C, "/a/b/y"),
        Event(1, C, "/ab"),
        Event(1, C, "/a"),
    ]

    def matched(selector: Selector) -> list[str]:
        return [e.path for e in events if selector.matches(e)]

    assert matched(Selector.node("/a/x")) == ["/a/x"]
    assert matched(Selector.node("/a")) == ["/a"]
    assert matched(Selector.children("/a/")) == ["/a/", "/a/x", "/a/b/"]
    assert matched(Selector.subtree("/a/")) == ["/a/", "/a/x", "/a/b/", "/a/b/y"]
    assert matched(Selector.subtree("/")) == [e.path for e in events]
    assert matched(Selector.children("/")) == ["/a/", "/ab", "/a"]


def test_resume_returns_only_missed_matching_events() -> None:
    h = Harness()
    h.create("/svc/")
    h.create("/svc/a")
    h.create("/other")
    h.set("/svc/a", b"x")
    h.create("/svc/b")
    result = batch(h.sm.events_since(2, Selector.children("/svc/")))
    assert [(e.revision, e.path) for e in result.events] == [(4, "/svc/a"), (5, "/svc/b")]
    assert result.through_revision == 5 and not result.more
    empty = batch(h.sm.events_since(5, Selector.children("/svc/")))
    assert empty.events == () and empty.through_revision == 5
    ahead = batch(h.sm.events_since(9))  # a replica behind its watcher: nothing yet, no going back
    assert ahead.events == () and ahead.through_revision == 9


def test_batches_hold_whole_revisions() -> None:
    h = Harness()
    h.create("/x/y/z/w", parents=True)  # revision 1: four events
    h.create("/q")
    first = batch(h.sm.events_since(0, limit=2))
    assert len(first.events) == 4 and first.through_revision == 1 and first.more
    second = batch(h.sm.events_since(first.through_revision, limit=2))
    assert [e.path for e in second.events] == ["/q"] and not second.more


def test_history_is_bounded_and_compaction_is_signalled() -> None:
    h = Harness(CoordLimits(history_max_events=3))
    for name in "abcde":
        h.create(f"/{name}")
    assert len(h.sm.history) == 3 and h.sm.history.compacted_through == 2
    compacted = h.sm.events_since(1)
    assert compacted == Compacted(since=1, compacted_through=2, current_revision=5)
    assert [e.path for e in batch(h.sm.events_since(2)).events] == ["/c", "/d", "/e"]
    # After Compacted, the watcher reloads the state and resumes from the revision the reload saw.
    reload = h.sm.select(Selector.subtree("/"))
    assert [n.path for n in reload.nodes] == ["/", "/a", "/b", "/c", "/d", "/e"]
    assert batch(h.sm.events_since(reload.revision)).events == ()


def test_history_byte_bound_keeps_at_least_the_newest_revision() -> None:
    history = EventHistory(max_events=100, max_bytes=100)
    history.append(1, (Event(1, C, "/a"),))
    history.append(2, (Event(2, C, "/" + "x" * 200),))
    assert history.compacted_through == 1 and len(history) == 1
    assert isinstance(history.events_since(0), Compacted)
    with pytest.raises(InvalidArgumentError):
        history.append(4, (Event(4, C, "/b"),))
    with pytest.raises(InvalidArgumentError):
        history.events_since(-1)


def test_history_restores_from_its_export() -> None:
    history = EventHistory(10, 10_000)
    for revision in range(1, 30):
        history.append(revision, (Event(revision, C, f"/n{revision}"), Event(revision, U, f"/n{revision}")))
    compacted_through, groups = history.export()
    again = EventHistory.restore(10, 10_000, compacted_through, list(groups))
    assert again.export() == history.export() and again.revision == 29
    with pytest.raises(InvalidArgumentError):
        EventHistory.restore(10, 10_000, 0, [(Event(1, C, "/a"), Event(2, C, "/b"))])


def test_watch_selectors_are_validated() -> None:
    h = Harness()
    with pytest.raises(InvalidArgumentError, match="needs a directory path"):
        h.sm.events_since(0, Selector.children("/a"))
    with pytest.raises(InvalidArgumentError):
        h.sm.events_since(0, Selector.node("no"))


def test_subscription_index_finds_every_interested_subscriber() -> None:
    index: SubscriptionIndex[str] = SubscriptionIndex(max_subscriptions=10)
    index.add("node", Selector.node("/a/b/c"))
    index.add("children", Selector.children("/a/b/"))
    index.add("subtree", Selector.subtree("/a/"))
    index.add("root", Selector.subtree("/"))
    index.add("dir", Selector.children("/a/b/c/"))
    index.add("node", Selector.node("/a/b/c"))  # twice: once
    assert len(index) == 5
    assert index.matching(Event(1, U, "/a/b/c")) == {"node", "children", "subtree", "root"}
    assert index.matching(Event(1, C, "/a/b/c/")) == {"children", "subtree", "root", "dir"}
    assert index.matching(Event(1, C, "/z")) == {"root"}
    index.remove_all("root")
    index.remove("subtree", Selector.subtree("/a/"))
    assert index.matching(Event(1, C, "/a/x")) == set()
    assert index.selectors("node") == {Selector.node("/a/b/c")}
    assert len(index) == 3
    small: SubscriptionIndex[int] = SubscriptionIndex(max_subscriptions=1)
    small.add(1, Selector.node("/a"))
    with pytest.raises(OverloadedError):
        small.add(2, Selector.node("/b"))
    assert small.selectors(2) == frozenset()
