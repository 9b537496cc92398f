"""The JSON Schema shipped with the package (job.schema.json) is exactly the one generated from the Structs, so
the two cannot drift; and it carries the format's bounds."""

from __future__ import annotations

import json

from feitian.job.core import MAX_INSTANCES, MAX_TASKS
from feitian.job.spec.model import MAX_PIPES
from feitian.job.spec.schema import SCHEMA_FILE, job_schema, job_schema_text, main


def test_the_shipped_schema_is_the_generated_one() -> None:
    assert SCHEMA_FILE.read_text() == job_schema_text(), (
        "job.schema.json is out of date: run `python -m feitian.job.spec.schema --write`"
    )


def test_the_schema_carries_the_bounds() -> None:
    schema = job_schema()
    defs = schema["$defs"]
    assert schema["$ref"] == "#/$defs/JobSpec"
    job = defs["JobSpec"]["properties"]
    assert (job["tasks"]["minItems"], job["tasks"]["maxItems"]) == (1, MAX_TASKS)
    assert job["pipes"]["maxItems"] == MAX_PIPES
    assert defs["JobSpec"]["required"] == ["name", "tasks"]
    instances = defs["TaskSpec"]["properties"]["instances"]["anyOf"][0]
    assert (instances["minimum"], instances["maximum"]) == (1, MAX_INSTANCES)
    assert defs["PipeSpec"]["properties"]["pattern"]["enum"] == ["1:1", "1:N", "hash", "range"]
    assert "from" in defs["PipeSpec"]["properties"] and defs["PipeSpec"]["additionalProperties"] is False
    json.dumps(schema)  # plain JSON


def test_the_writer_refuses_unknown_arguments(capsys: object) -> None:
    assert main(["--bogus"]) == 2
