"""Streamline's producer and local consumer against a plain Python reference: partitioning, spilling under the
memory bound, the k-way merge, the atomic commit of an instance's output."""

from __future__ import annotations

import random
from collections import Counter
from pathlib import Path

import pyarrow as pa
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from feitian.errors import InvalidArgumentError
from feitian.job.core import Pattern
from feitian.job.streamline import (
    OutputStore,
    PartitionedWriter,
    Partitioning,
    StreamlineConfig,
    kv_batch,
    range_partition_id,
    read_partition,
    splitters_from_keys,
    stable_hash,
)

SMALL = StreamlineConfig(memory_bytes=16 << 10, block_bytes=4 << 10)

Record = tuple[bytes, bytes]


def reference(records: list[Record], partitioning: Partitioning) -> list[list[Record]]:
    """Each partition's records the plain way: one record at a time, Python's sort."""
    parts: list[list[Record]] = [[] for _ in range(partitioning.partitions)]
    for key, value in records:
        if partitioning.mode == "hash":
            j = stable_hash(key) % partitioning.partitions
        elif partitioning.mode == "range":
            j = range_partition_id(key, partitioning.splitters)
        else:
            j = 0
        parts[j].append((key, value))
    if partitioning.sort:
        parts = [sorted(p, key=lambda r: r[0]) for p in parts]
    return parts


def rows(batches: list[pa.RecordBatch]) -> list[Record]:
    out: list[Record] = []
    for b in batches:
        out.extend(zip(b.column(0).to_pylist(), b.column(1).to_pylist(), strict=True))
    return out


def write_instances(
    tmp: Path, inputs: list[list[Record]], partitioning: Partitioning, config: StreamlineConfig, chunk: int = 37
) -> tuple[OutputStore, list[PartitionedWriter]]:
    store = OutputStore(tmp)
    writers = []
    for instance, records in enumerate(inputs):
        w = PartitionedWriter(store, "edge", instance, 0, partitioning, config)
        for start in range(0, len(records), chunk):
            piece = records[start : start + chunk]
            w.write(kv_batch([k for k, _ in piece], [v for _, v in piece]))
        result = w.close()
        assert result.committed
        writers.append(w)
    return store, writers


def check_against_reference(store: OutputStore, inputs: list[list[Record]], partitioning: Partitioning) -> None:
    expected = [reference(records, partitioning) for records in inputs]
    for j in range(partitioning.partitions):
        got = rows(list(read_partition(store, "edge", range(len(inputs)), j, sort=partitioning.sort)))
        want = [r for per_instance in expected for r in per_instance[j]]
        assert Counter(got) == Counter(want), f"partition {j}"
        if partitioning.sort:
            keys = [k for k, _ in got]
            assert keys == sorted(keys), f"partition {j} is not sorted"
        else:
            assert got == want, f"partition {j}: unsorted output keeps each instance's order"


keys_st = st.binary(min_size=0, max_size=12)
records_st = st.lists(st.tuples(keys_st, st.binary(max_size=300)), max_size=250)


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    inputs=st.lists(records_st, min_size=1, max_size=3),
    mode=st.sampled_from(["hash", "range", "single"]),
    partitions=st.integers(1, 5),
    sort=st.booleans(),
)
def test_every_pattern_matches_the_reference(
    tmp_path_factory: pytest.TempPathFactory, inputs: list[list[Record]], mode: str, partitions: int, sort: bool
) -> None:
    tmp = tmp_path_factory.mktemp("out")
    if mode == "hash":
        p = Partitioning.hash(partitions, sort=sort)
    elif mode == "range":
        sample = [k for records in inputs for k, _ in records]
        p = Partitioning.range(splitters_from_keys(sample, partitions), sort=sort)
    else:
        p = Partitioning.single(sort=sort)
    store, _ = write_instances(tmp, inputs, p, SMALL)
    check_against_reference(store, inputs, p)


def random_records(rng: random.Random, n: int) -> list[Record]:
    return [(rng.randbytes(rng.randint(1, 16)), rng.randbytes(rng.randint(0, 200))) for _ in range(n)]


@pytest.mark.parametrize("sort", [True, False])
def test_memory_bound_spills_and_is_never_exceeded(tmp_path: Path, sort: bool) -> None:
    rng = random.Random(7)
    inputs = [random_records(rng, 6000)]  # about 650 KB of records against a 16 KiB bound
    p = Partitioning.hash(3, sort=sort)
    store, (writer,) = write_instances(tmp_path, inputs, p, SMALL, chunk=50)
    assert writer.stats.spills > 10
    assert 0 < writer.stats.peak_buffered_bytes <= SMALL.memory_bytes
    if sort:
        assert writer.stats.merge_passes > 0  # more runs than the fan-in: merged in passes
    check_against_reference(store, inputs, p)
    assert not (tmp_path / "edge" / "attempts" / "0.0").exists()


def test_one_batch_larger_than_the_bound_is_split(tmp_path: Path) -> None:
    rng = random.Random(3)
    records = random_records(rng, 3000)
    store = OutputStore(tmp_path)
    w = PartitionedWriter(store, "edge", 0, 0, Partitioning.range([1 << 63], sort=True), SMALL)
    w.write(kv_batch([k for k, _ in records], [v for _, v in records]))
    w.close()
    assert w.stats.peak_buffered_bytes <= SMALL.memory_bytes
    check_against_reference(store, [records], w.partitioning)


def test_a_second_attempt_never_duplicates_the_output(tmp_path: Path) -> None:
    store = OutputStore(tmp_path)
    p = Partitioning.hash(2)
    first = PartitionedWriter(store, "edge", 5, 0, p, SMALL)
    backup = PartitionedWriter(store, "edge", 5, 1, p, SMALL)
    first.write(kv_batch([b"a", b"b"], [b"1", b"2"]))
    backup.write(kv_batch([b"a", b"b"], [b"1", b"2"]))
    won = backup.close()
    lost = first.close()
    assert won.committed and won.attempt == 1
    assert not lost.committed and lost.attempt == 1
    assert store.index("edge", 5).attempt == 1
    assert sorted(p.name for p in (tmp_path / "edge" / "committed").iterdir()) == ["5"]
    assert list((tmp_path / "edge" / "attempts").iterdir()) == []  # the loser's files are gone
    got = rows([b for j in range(2) for b in read_partition(store, "edge", [5], j)])
    assert sorted(got) == [(b"a", b"1"), (b"b", b"2")]


def test_an_uncommitted_attempt_is_invisible(tmp_path: Path) -> None:
    store = OutputStore(tmp_path)
    w = PartitionedWriter(store, "edge", 0, 0, Partitioning.single(), SMALL)
    w.write(kv_batch([b"k"], [b"v"]))
    assert not store.is_committed("edge", 0)
    w.abort()
    assert not store.is_committed("edge", 0)
    assert not w.dir.exists()


def test_arrow_batches_with_a_named_key_column(tmp_path: Path) -> None:
    store = OutputStore(tmp_path)
    p = Partitioning.hash(3, key="word", sort=True)
    w = PartitionedWriter(store, "edge", 0, 0, p, SMALL)
    words = [f"w{i % 97}".encode() for i in range(2000)]
    w.write(pa.record_batch({"word": pa.array(words, pa.binary()), "n": pa.array(range(2000), pa.int64())}))
    w.close()
    seen: list[bytes] = []
    for j in range(3):
        batches = list(read_partition(store, "edge", [0], j, sort=True, key="word"))
        part = [x for b in batches for x in b.column("word").to_pylist()]
        assert part == sorted(part)
        assert all(stable_hash(x) % 3 == j for x in part)
        seen.extend(part)
    assert Counter(seen) == Counter(words)


def test_bad_partitionings_are_refused_with_every_problem(tmp_path: Path) -> None:
    with pytest.raises(InvalidArgumentError) as err:
        PartitionedWriter(OutputStore(tmp_path), "edge", 0, 0, Partitioning("range", 3, (5, 2)), SMALL)
    assert "need 2 splitters" not in err.value.message and "ascending" in err.value.message
    with pytest.raises(InvalidArgumentError, match="not a valid name"):
        PartitionedWriter(OutputStore(tmp_path), "../x", 0, 0, Partitioning.single(), SMALL)


def test_edges_of_the_job_graph_map_to_partitionings() -> None:
    assert Partitioning.for_edge(Pattern.HASH, 4).partitions == 4
    assert Partitioning.for_edge(Pattern.RANGE, 3, splitters=[1, 2]).mode == "range"
    assert Partitioning.for_edge(Pattern.BROADCAST, 9).partitions == 1
    assert Partitioning.for_edge(Pattern.ONE_TO_ONE, 9).mode == "single"


def test_hash_partitions_need_a_binary_key(tmp_path: Path) -> None:
    w = PartitionedWriter(OutputStore(tmp_path), "edge", 0, 0, Partitioning.hash(2, key="n"), SMALL)
    with pytest.raises(InvalidArgumentError, match="need a binary or string key column"):
        w.write(pa.record_batch({"n": pa.array([1, 2], pa.int64())}))
    single = PartitionedWriter(OutputStore(tmp_path), "edge", 1, 0, Partitioning.single(key="n", sort=True), SMALL)
    single.write(pa.record_batch({"n": pa.array([3, 1, 2], pa.int64())}))
    single.close()
    got = [x for b in read_partition(single.store, "edge", [1], 0, sort=True, key="n") for x in b.column(0).to_pylist()]
    assert got == [1, 2, 3]


def test_a_record_larger_than_the_bound_is_spilled_alone(tmp_path: Path) -> None:
    rng = random.Random(11)
    records = random_records(rng, 300)
    records.insert(150, (b"huge", b"h" * (40 << 10)))  # 40 KiB against a 16 KiB bound
    store, (w,) = write_instances(tmp_path, [records], Partitioning.hash(2, sort=True), SMALL, chunk=1)
    assert w.stats.spills >= 2
    # the buffer was spilled before the huge record came in: it was buffered alone
    assert SMALL.memory_bytes < w.stats.peak_buffered_bytes < (40 << 10) + 1024
    check_against_reference(store, [records], w.partitioning)
