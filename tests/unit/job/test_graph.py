from __future__ import annotations

import pytest

from feitian.job.core import EdgeDef, JobGraph, Pattern, TaskDef


def test_order_sources_and_edges() -> None:
    g = JobGraph(
        [TaskDef("reduce", 4), TaskDef("map", 8), TaskDef("final", 4)],
        [EdgeDef("map", "reduce", Pattern.HASH), EdgeDef("reduce", "final", Pattern.ONE_TO_ONE)],
    )
    assert g.order == ("map", "reduce", "final")
    assert g.sources() == ("map",)
    assert [e.src for e in g.upstream("reduce")] == ["map"]
    assert Pattern.HASH.partitioned and not Pattern.BROADCAST.partitioned


def test_every_problem_is_listed() -> None:
    with pytest.raises(ValueError) as e:
        JobGraph(
            [TaskDef("a", 2), TaskDef("b", 3), TaskDef("a", 1), TaskDef("c", 0)],
            [EdgeDef("a", "b", Pattern.ONE_TO_ONE), EdgeDef("a", "zz", Pattern.HASH)],
        )
    text = str(e.value)
    assert "defined twice" in text and "unknown task 'zz'" in text and "0 instances" in text
    assert "1:1" in text


def test_cycle_is_named() -> None:
    with pytest.raises(ValueError, match="cycle: a -> b -> c -> a"):
        JobGraph(
            [TaskDef("a", 1), TaskDef("b", 1), TaskDef("c", 1)],
            [EdgeDef("a", "b", Pattern.HASH), EdgeDef("b", "c", Pattern.HASH), EdgeDef("c", "a", Pattern.HASH)],
        )
