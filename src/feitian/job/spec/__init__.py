"""Job descriptions (FUXI-7): what a user writes to run a DAG job — as a JSON or YAML file or from Python — and
how it becomes the DAG the job core runs (docs/jobs.md).

::

    spec = read_job("examples/jobs/wordcount.yaml")          # or decode_job(text), or Job("wc").task(...).spec
    validate(spec, exists=..., capacities=...)               # ConfigError listing every problem, with paths
    graph = build_graph(spec, {"map": splits})               # -> feitian.job.core.JobGraph

* ``model.py`` — the Structs (the format, with its bounds) and the defaults;
* ``load.py`` — JSON/YAML in and out; ``schema.py`` + ``job.schema.json`` — the JSON Schema (``python -m
  feitian.job.spec.schema [--write]``);
* ``check.py`` — every problem at once; ``amounts.py`` — sizes, cores, names and Pangu paths;
* ``build.py`` — the Python API (:class:`Job`); ``plan.py`` — input splits and the :class:`JobGraph`.

This is the service layer's description package: it imports the pure job core and Fuxi's root, never the
JobMaster or the workers.
"""

from feitian.job.spec.amounts import format_size, parse_size, shape_of
from feitian.job.spec.build import Job
from feitian.job.spec.check import OPERATORS, Problem, input_problems, instance_counts, problems, validate
from feitian.job.spec.load import decode_job, guess_format, job_to_dict, job_to_json, job_to_yaml, read_job
from feitian.job.spec.model import (
    BUILTIN_DEFAULTS,
    MAX_FILE_BYTES,
    MAX_PIPES,
    Code,
    Defaults,
    JobSpec,
    KeySpec,
    Output,
    PipeSpec,
    Resources,
    TaskSpec,
    Workers,
    effective_format,
    effective_task,
    normalized,
)
from feitian.job.spec.plan import Chunk, Split, build_graph, file_splits, split_size_of

__all__ = [
    "BUILTIN_DEFAULTS",
    "MAX_FILE_BYTES",
    "MAX_PIPES",
    "OPERATORS",
    "Chunk",
    "Code",
    "Defaults",
    "Job",
    "JobSpec",
    "KeySpec",
    "Output",
    "PipeSpec",
    "Problem",
    "Resources",
    "Split",
    "TaskSpec",
    "Workers",
    "build_graph",
    "decode_job",
    "effective_format",
    "effective_task",
    "file_splits",
    "format_size",
    "guess_format",
    "input_problems",
    "instance_counts",
    "job_to_dict",
    "job_to_json",
    "job_to_yaml",
    "normalized",
    "parse_size",
    "problems",
    "read_job",
    "shape_of",
    "split_size_of",
    "validate",
]
