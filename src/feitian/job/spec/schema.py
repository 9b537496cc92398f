"""The JSON Schema of a job file, generated from the Structs (``msgspec.json.schema``) and shipped beside them as
``job.schema.json`` for editors and other tools. A unit test checks that the shipped file equals what this module
generates, so the two cannot drift; after changing a Struct, write it again with
``python -m feitian.job.spec.schema --write``.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import msgspec

from feitian.job.spec.model import JobSpec

__all__ = ["SCHEMA_FILE", "job_schema", "job_schema_text"]

SCHEMA_FILE = Path(__file__).with_name("job.schema.json")


def job_schema() -> dict[str, Any]:
    schema: dict[str, Any] = msgspec.json.schema(JobSpec)
    return {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "title": "feitian job description (docs/jobs.md)",
        **schema,
    }


def job_schema_text() -> str:
    return msgspec.json.format(msgspec.json.encode(job_schema()), indent=2).decode() + "\n"


def main(argv: list[str]) -> int:
    if argv == ["--write"]:
        SCHEMA_FILE.write_text(job_schema_text())
        return 0
    if argv:
        sys.stderr.write("usage: python -m feitian.job.spec.schema [--write]\n")
        return 2
    sys.stdout.write(job_schema_text())
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
