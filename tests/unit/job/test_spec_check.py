"""Every problem of meaning of a job description, at once, each with its path (feitian.job.spec.check): names,
counts, resources, code references, inputs (existence asked of a fake Pangu), machines' capacities, pipes and
how their pattern fits, cycles."""

from __future__ import annotations

import fnmatch
from typing import Any

import msgspec
import pytest

from feitian.errors import ConfigError
from feitian.job.spec import JobSpec, decode_job, input_problems, problems, validate
from feitian.job.spec.model import MAX_ARGS_BYTES

CAT = {"command": ["cat"]}


def job(*tasks: dict[str, Any], pipes: tuple[dict[str, Any], ...] = (), **top: Any) -> JobSpec:
    doc = {"name": "j", "tasks": [{"code": CAT, **t} for t in tasks], "pipes": list(pipes), **top}
    return decode_job(msgspec.json.encode(doc), source="j.json")


def found(spec: JobSpec, **kwargs: Any) -> list[str]:
    return [str(p) for p in problems(spec, **kwargs)]


def test_a_good_job_has_no_problem() -> None:
    spec = job(
        {"name": "map", "inputs": ["/in/*.txt"], "code": {"function": "wc.tasks:map_words", "package": "wc@2"}},
        {"name": "reduce", "instances": 4, "code": {"operator": "combine", "args": {"op": "sum"}}},
        {"name": "final", "code": {"command": ["sort", "-n"]}, "output": {"dir": "/out/wc"}},
        pipes=(
            {"from": "map", "to": "reduce", "pattern": "hash", "sort": True},
            {"from": "reduce", "to": "final", "pattern": "1:1"},
        ),
        defaults={"resources": {"cpu": 0.5, "memory": "512MiB", "virtual": {"gpu": 1}}},
        group="batch",
        priority=10,
    )
    assert found(spec) == []
    assert validate(spec) is spec


def test_every_problem_is_listed_at_once_with_its_path() -> None:
    spec = job(
        {"name": "a", "instances": 2, "resources": {"memory": "lots", "cpu": 0.0001}},
        {"name": "b", "instances": 3, "code": {"function": "no_colon"}},
        {"name": "c", "inputs": ["relative/path"], "code": {"operator": "tokenise"}},
        {"name": "b", "instances": 3},
        pipes=(
            {"from": "a", "to": "b", "pattern": "1:1"},
            {"from": "b", "to": "zz", "pattern": "1:N", "sort": True},
            {"from": "a", "to": "b", "pattern": "range"},
        ),
        name="bad name",
    )
    paths = [p.path for p in problems(spec)]
    assert paths == [
        "name",
        "tasks[0].resources.cpu",
        "tasks[0].resources.memory",
        "tasks[1].code.function",
        "tasks[2].inputs[0]",
        "tasks[2].code.operator",
        "tasks[3].name",  # defined twice
        "pipes[1].to",
        "pipes[1].sort",
        "pipes[2]",  # defined twice
        "pipes[2]",  # range without a key
        "pipes[0]",  # 1:1 between 2 and 3 instances
    ]
    with pytest.raises(ConfigError) as e:
        validate(spec)
    assert len(e.value.fields["problems"]) == len(paths)
    assert "12 problems" in e.value.message


def test_a_cycle_is_named() -> None:
    spec = job(
        {"name": "a"},
        {"name": "b"},
        {"name": "c"},
        pipes=({"from": "a", "to": "b"}, {"from": "b", "to": "c"}, {"from": "c", "to": "a", "pattern": "1:N"}),
    )
    assert found(spec) == ["pipes: cycle: a -> b -> c -> a"]


def test_self_and_duplicate_pipes() -> None:
    pipes = ({"from": "a", "to": "a"}, {"from": "a", "to": "b"}, {"from": "a", "to": "b", "pattern": "1:N"})
    assert found(job({"name": "a"}, {"name": "b"}, pipes=pipes)) == [
        "pipes[0]: task 'a' cannot feed itself",
        "pipes[2]: pipe a -> b is defined twice (also pipes[1])",
    ]


def test_one_to_one_counts_follow_producers_without_a_count() -> None:
    ok = job({"name": "a", "instances": 5}, {"name": "b"}, {"name": "c"}, pipes=({"from": "a", "to": "b"},))
    assert found(ok) == []
    bad = job(
        {"name": "a", "instances": 5},
        {"name": "b"},
        {"name": "c", "instances": 4},
        pipes=({"from": "a", "to": "b"}, {"from": "b", "to": "c"}),
    )
    assert found(bad) == ["pipes[1]: 1:1 from 'b' (5 instances) to 'c' (4 instances)"]
    # A task with inputs has its count only once its splits are known: not a problem yet.
    later = job({"name": "a", "inputs": ["/x"]}, {"name": "b", "instances": 4}, pipes=({"from": "a", "to": "b"},))
    assert found(later) == []


@pytest.mark.parametrize(
    ("pipe", "defaults", "expected"),
    [
        ({"pattern": "1:N", "sort": True}, {}, ["pipes[0].sort: a broadcast has no partitions to sort"]),
        ({"pattern": "1:1", "sort": True}, {}, ["pipes[0].sort: a 1:1 pipe has no partitions to sort"]),
        ({"pattern": "1:N", "key": {"type": "bytes"}}, {}, ["pipes[0].key: a 1:N pipe does not partition"]),
        ({"pattern": "range"}, {}, ["pipes[0]: `range` needs a `key`"]),
        ({"pattern": "range", "format": "arrow"}, {}, ["pipes[0]: `range` needs a `key`"]),
        ({"pattern": "hash"}, {"format": "arrow"}, ["pipes[0].key: hash of arrow records needs the key's `columns`"]),
        (
            {"pattern": "hash", "format": "arrow", "key": {"columns": ["k"], "prefix_bytes": 4}},
            {},
            ["pipes[0].key: `type` and `prefix_bytes` are for kv records"],
        ),
        ({"pattern": "hash", "key": {"columns": ["k"]}}, {}, ["pipes[0].key.columns: kv records have one key"]),
        ({"pattern": "range", "key": {"type": "int"}, "sort": True}, {}, []),
        ({"pattern": "hash", "sort": True}, {}, []),
        ({"pattern": "range", "key": {"columns": ["k"]}}, {"format": "arrow"}, []),
    ],
)
def test_a_pattern_must_fit_its_key_sort_and_format(
    pipe: dict[str, Any], defaults: dict[str, Any], expected: list[str]
) -> None:
    spec = job({"name": "a"}, {"name": "b"}, pipes=({"from": "a", "to": "b", **pipe},), defaults=defaults)
    got = found(spec)
    assert len(got) == len(expected), got
    for text, start in zip(got, expected, strict=True):
        assert text.startswith(start), got


@pytest.mark.parametrize(
    ("code", "where", "says"),
    [
        ({}, "tasks[0].code", "given: none"),
        ({"function": "m:f", "command": ["x"]}, "tasks[0].code", "given: `function` and `command`"),
        ({"function": "m.f"}, "tasks[0].code.function", "is not `module:function`"),
        ({"function": "m:"}, "tasks[0].code.function", "is not `module:function`"),
        ({"function": "1m:f"}, "tasks[0].code.function", "is not `module:function`"),
        ({"function": "pkg.class:f"}, "tasks[0].code.function", "a Python keyword"),
        ({"operator": "nope"}, "tasks[0].code.operator", "unknown operator 'nope'"),
        ({"operator": "sort", "package": "p"}, "tasks[0].code.package", "comes from no package"),
        ({"function": "m:f", "package": "bad name"}, "tasks[0].code.package", "package name 'bad name'"),
        ({"function": "m:f", "package": "p@x"}, "tasks[0].code.package", "is not a number"),
        ({"command": ["x"], "args": {"a": 1}}, "tasks[0].code.args", "in `command` itself"),
        ({"operator": "sort", "args": {"a": "x" * MAX_ARGS_BYTES}}, "tasks[0].code.args", f"at most {MAX_ARGS_BYTES}"),
        ({"command": []}, "tasks[0].code.command", "an empty command"),
        ({"command": ["a", "b\x00"]}, "tasks[0].code.command[1]", "NUL"),
    ],
)
def test_code_references(code: dict[str, Any], where: str, says: str) -> None:
    got = problems(job({"name": "t", "code": code}))
    assert len(got) == 1 and got[0].path == where and says in got[0].message, got


@pytest.mark.parametrize(
    ("task", "where", "says"),
    [
        ({"instances": 2, "inputs": ["/a"]}, "tasks[0]", "both `instances` and `inputs`"),
        ({"inputs": []}, "tasks[0].inputs", "an empty list"),
        ({"inputs": ["/a//b"]}, "tasks[0].inputs[0]", "empty path segment"),
        ({"inputs": ["/a/../b"]}, "tasks[0].inputs[0]", "'.' and '..'"),
        ({"inputs": ["/"]}, "tasks[0].inputs[0]", "the root is a directory"),
        ({"inputs": ["/a\tb"]}, "tasks[0].inputs[0]", "control character"),
        ({"split_size": "64MiB"}, "tasks[0].split_size", "only a task with `inputs`"),
        ({"inputs": ["/a"], "split_size": "1KiB"}, "tasks[0].split_size", "64KiB..64GiB"),
        ({"inputs": ["/a"], "split_size": "big"}, "tasks[0].split_size", "is not a size"),
        ({"output": {"dir": "/out/*"}}, "tasks[0].output.dir", "glob characters"),
        ({"output": {"dir": "out"}}, "tasks[0].output.dir", "not an absolute Pangu path"),
        ({"name": "-x"}, "tasks[0].name", "letters, digits"),
        ({"resources": {"memory": "0MiB"}}, "tasks[0].resources.memory", "not a positive size"),
        ({"resources": {"memory": "17TiB"}}, "tasks[0].resources.memory", "above Fuxi's bound 16TiB"),
        ({"resources": {"disk": "3XB"}}, "tasks[0].resources.disk", "is not a size"),
        ({"resources": {"disk": "9" * 400 + "T"}}, "tasks[0].resources.disk", "far too large"),
        ({"resources": {"virtual": {"cpu": 2}}}, "tasks[0].resources.virtual.cpu", "a built-in resource"),
        ({"resources": {"virtual": {"g": 1 << 41}}}, "tasks[0].resources.virtual.g", "above Fuxi's bound"),
    ],
)
def test_task_fields(task: dict[str, Any], where: str, says: str) -> None:
    got = problems(job({"name": "t", **task}))
    assert len(got) == 1 and got[0].path == where and says in got[0].message, got


def test_job_level_fields() -> None:
    spec = job({"name": "t"}, group="no spaces allowed", defaults={"resources": {"memory": "x"}, "split_size": 1})
    assert [p.path for p in problems(spec)] == ["group", "defaults.resources.memory", "defaults.split_size"]


def test_inputs_that_pangu_does_not_have() -> None:
    files = ["/data/a.txt", "/data/b.txt", "/logs/x"]
    asked: list[str] = []

    def exists(pattern: str) -> bool:
        asked.append(pattern)
        return any(fnmatch.fnmatchcase(f, pattern) for f in files)

    spec = job(
        {"name": "a", "inputs": ["/data/*.txt", "/data/*.csv"]},
        {"name": "b", "inputs": ["/logs/x", "/nope", "bad"]},
    )
    got = found(spec, exists=exists)
    assert got[-2:] == [
        "tasks[0].inputs[1]: no file in Pangu matches '/data/*.csv'",
        "tasks[1].inputs[1]: no file in Pangu matches '/nope'",
    ]
    assert "bad" not in asked  # a malformed path is reported as such, never asked about
    assert found(spec) == got[:-2]  # without `exists`, nothing is asked


async def test_inputs_asked_of_an_async_pangu() -> None:
    async def exists(pattern: str) -> bool:
        return pattern == "/there"

    spec = job({"name": "a", "inputs": ["/there", "/gone*"]})
    assert [str(p) for p in await input_problems(spec, exists)] == [
        "tasks[0].inputs[1]: no file in Pangu matches '/gone*'"
    ]


def test_resources_no_machine_has() -> None:
    machines = [{"cpu": 32_000, "memory": 128 << 30}, {"cpu": 8_000, "memory": 512 << 30, "gpu": 4}]
    spec = job(
        {"name": "fits", "resources": {"cpu": 8, "memory": "256GiB", "virtual": {"gpu": 2}}},
        {"name": "cpu", "resources": {"cpu": 64}},
        {"name": "both", "resources": {"cpu": 16, "memory": "256GiB"}},
        {"name": "gpu", "resources": {"virtual": {"gpu": 8}}},
        {"name": "lic", "resources": {"virtual": {"licence": 3}}},
    )
    got = found(spec, capacities=machines, pools={"licence": 2})
    assert got == [
        "tasks[1].resources: no machine has cpu 64 cores (the most any machine has: cpu 32 cores)",
        "tasks[2].resources: no machine has all of cpu 16 cores, memory 256GiB at once",
        "tasks[3].resources: no machine has gpu 8 (the most any machine has: gpu 4)",
        "tasks[4].resources: licence 3: the cluster's pool holds 2",
    ]
    assert found(job({"name": "t"}), capacities=[]) == ["tasks[0].resources: the cluster has no machine"]
