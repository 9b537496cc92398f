"""Whatever a job file holds, loading and checking it ends in a result or a FeitianError — never another
exception, which the CLI would show as an internal error (a user mistake never shows a traceback)."""

from __future__ import annotations

import contextlib
from typing import Any

import msgspec
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from feitian.errors import FeitianError
from feitian.job.spec import Split, build_graph, decode_job, instance_counts, normalized, problems

SCALARS = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-(2**70), 2**70),
    st.floats(allow_nan=False),
    st.sampled_from(["1:1", "1:N", "hash", "range", "kv", "arrow", "a", "b", "/in/*", "m:f", "512MiB", "threads"]),
    st.text(max_size=20),
)
FIELDS = [
    "name", "code", "instances", "inputs", "split_size", "resources", "workers", "max_attempts", "backups", "output",
    "function", "package", "operator", "args", "command", "cpu", "memory", "virtual", "mode", "concurrency", "dir",
    "replication", "from", "to", "pattern", "sort", "key", "format", "columns", "type", "prefix_bytes",
]  # fmt: skip
VALUES = st.recursive(
    SCALARS,
    lambda inner: st.one_of(st.lists(inner, max_size=4), st.dictionaries(st.sampled_from(FIELDS), inner, max_size=5)),
    max_leaves=20,
)
TASK = st.fixed_dictionaries(
    {
        "name": st.sampled_from(["a", "b", "c"]),
        "code": st.one_of(st.sampled_from([{"command": ["cat"]}, {"function": "m:f"}]), VALUES),
    },
    optional={f: VALUES for f in ("instances", "inputs", "split_size", "resources", "workers", "output")},
)
PIPE = st.fixed_dictionaries(
    {"from": st.sampled_from(["a", "b", "c"]), "to": st.sampled_from(["a", "b", "c"])},
    optional={f: VALUES for f in ("pattern", "sort", "key", "format")},
)
DOC = st.fixed_dictionaries(
    {"name": st.sampled_from(["j", "bad name"]), "tasks": st.lists(TASK, min_size=1, max_size=4)},
    optional={"pipes": st.lists(PIPE, max_size=4), "defaults": VALUES, "priority": VALUES},
)


def run(doc: Any) -> None:
    try:
        spec = decode_job(msgspec.json.encode(doc), source="fuzz.json")
        found = problems(spec, exists=lambda p: True, capacities=[{"cpu": 4000, "memory": 8 << 30}])
        if not problems(spec):
            counts = instance_counts(spec)
            normalized(spec, counts)
            splits = {t.name: [Split("/in/x", 0, 1, ("m1",))] * 2 for t in spec.tasks if t.inputs is not None}
            build_graph(spec, splits)
        assert all(p.message for p in found)
    except FeitianError:
        pass


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(DOC)
def test_any_document_of_the_right_shape_is_a_result_or_a_feitian_error(doc: dict[str, Any]) -> None:
    run(doc)


@settings(max_examples=200, deadline=None)
@given(VALUES)
def test_any_json_value_is_a_result_or_a_feitian_error(value: Any) -> None:
    run(value)


@settings(max_examples=300, deadline=None)
@given(st.one_of(st.binary(max_size=200), st.text(alphabet=st.sampled_from(list("{}[]:,-'\"!&*#|>? \n\tabc1")))))
def test_any_text_is_a_result_or_a_feitian_error(text: bytes | str) -> None:
    for fmt in ("json", "yaml"):
        with contextlib.suppress(FeitianError):
            decode_job(text, fmt=fmt, source="fuzz")  # type: ignore[arg-type]
