"""From a description and its splits to the job core's JobGraph (feitian.job.spec.plan): splits and their
preferred hosts, counts, resources in Fuxi's units, patterns, and every problem when it cannot be built."""

from __future__ import annotations

import itertools

import pytest
from hypothesis import given
from hypothesis import strategies as st

from feitian.errors import ConfigError
from feitian.job.core import MAX_INSTANCES, Pattern
from feitian.job.spec import Chunk, Job, Split, build_graph, file_splits, split_size_of

MiB = 1 << 20


def test_splits_cut_a_file_and_prefer_the_machines_with_most_of_its_bytes() -> None:
    chunks = [Chunk(0, 64 * MiB, ("m1", "m2")), Chunk(64 * MiB, 64 * MiB, ("m2", "m3")), Chunk(128 * MiB, 4, ("m9",))]
    splits = file_splits("/in/a", 128 * MiB + 4, 96 * MiB, chunks)
    assert splits == [
        Split("/in/a", 0, 96 * MiB, ("m2", "m1", "m3")),  # m2 holds all 96 MiB, m1 64, m3 32
        Split("/in/a", 96 * MiB, 32 * MiB + 4, ("m2", "m3", "m9")),
    ]
    assert file_splits("/in/empty", 0, 64 * MiB) == [Split("/in/empty", 0, 0, ())]
    assert file_splits("/in/b", 10, 64 * MiB) == [Split("/in/b", 0, 10, ())]


def test_more_splits_than_instances_allows_is_refused() -> None:
    with pytest.raises(ValueError, match="more than"):
        file_splits("/huge", (MAX_INSTANCES + 1) * 65536, 65536)


@given(st.integers(0, 10_000), st.integers(1, 3_000), st.integers(1, 2_000))
def test_splits_cover_the_file_exactly(length: int, split_size: int, chunk_size: int) -> None:
    chunks = [Chunk(o, min(chunk_size, length - o), (f"m{o // chunk_size % 3}",)) for o in range(0, length, chunk_size)]
    splits = file_splits("/f", length, split_size, chunks)
    assert splits[0].offset == 0
    assert all(a.offset + a.length == b.offset for a, b in itertools.pairwise(splits))
    assert splits[-1].offset + splits[-1].length == length
    assert all(0 < s.length <= split_size for s in splits) or length == 0
    assert all(s.hosts for s in splits) or length == 0  # every byte is on some machine


def wordcount() -> Job:
    return (
        Job("wc")
        .defaults(memory="512MiB", max_attempts=2)
        .task("map", inputs=["/in/*"], function="wc:map_words", cpu=0.5, virtual={"gpu": 1})
        .task("reduce", instances=3, function="wc:sum", backups=False, disk="10GiB", net=100)
        .task("final", function="wc:final")
        .task("audit", command=["wc", "-l"])
        .pipe("map", "reduce", pattern="hash", sort=True)
        .pipe("reduce", "final", pattern="1:1")
        .pipe("map", "audit", pattern="1:N")
    )


def test_the_graph_has_counts_hosts_resources_and_patterns() -> None:
    splits = [Split("/in/a", 0, 64 * MiB, ("m1",)), Split("/in/a", 64 * MiB, 5, ("m2", "m3")), Split("/in/b", 0, 9)]
    graph = build_graph(wordcount().spec, {"map": splits})
    m, r, f, a = (graph.tasks[n] for n in ("map", "reduce", "final", "audit"))
    assert (m.instances, r.instances, f.instances, a.instances) == (3, 3, 3, 1)
    assert m.hosts == (("m1",), ("m2", "m3"), ())
    assert r.hosts == () and f.hosts == ()
    assert dict(m.resources) == {"cpu": 500, "memory": 512 * MiB, "gpu": 1}
    assert dict(r.resources) == {"cpu": 1000, "memory": 512 * MiB, "disk": 10 << 30, "net": 100}
    assert (m.max_attempts, m.backups, r.backups) == (2, True, False)
    assert [(e.src, e.dst, e.pattern) for e in graph.edges] == [
        ("map", "reduce", Pattern.HASH),
        ("reduce", "final", Pattern.ONE_TO_ONE),
        ("map", "audit", Pattern.BROADCAST),
    ]
    assert graph.order == ("map", "reduce", "audit", "final")


def test_splits_without_hosts_give_no_preference() -> None:
    graph = build_graph(wordcount().spec, {"map": [Split("/in/a", 0, 1), Split("/in/b", 0, 1)]})
    assert graph.tasks["map"].hosts == ()


def test_what_cannot_be_built_is_listed() -> None:
    with pytest.raises(ConfigError) as e:
        build_graph(wordcount().spec, {"map": [], "reduce": [Split("/x", 0, 1)]})
    assert e.value.fields["problems"] == [
        "task 'map': no input splits (its inputs match no file)",
        "task 'reduce': splits given, but it has no inputs",
    ]
    one_to_one = Job("j").task("a", inputs=["/in"], command=["cat"]).task("b", instances=2, command=["cat"])
    with pytest.raises(ConfigError) as e:
        build_graph(one_to_one.pipe("a", "b").spec, {"a": [Split("/in", 0, 1)] * 3})
    assert e.value.fields["problems"] == ["edge a -> b (1:1): 3 producer instances but 2 consumer instances"]
    with pytest.raises(ConfigError) as e:
        build_graph(Job("j").task("a", command=["cat"]).pipe("a", "zz").spec, {})
    assert e.value.fields["problems"] == ["pipes[0].to: unknown task 'zz' (tasks: a)"]


def test_split_size_of_a_task() -> None:
    spec = wordcount().spec
    assert split_size_of(spec, "map") == 64 * MiB
    spec = Job("j").defaults(split_size="8MiB").task("a", inputs=["/x"], command=["cat"]).spec
    assert split_size_of(spec, "a") == 8 * MiB
