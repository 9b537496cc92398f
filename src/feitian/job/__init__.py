"""Fuxi's DAG jobs (FUXI-7..11): job descriptions, the JobMaster and its TaskMasters, TaskWorkers, streamline.

A job runs as a Fuxi application: its JobMaster is the application master (``feitian.sched``), its TaskWorkers
run on grants. The pure scheduling core is :mod:`feitian.job.core`; job descriptions (the file format, its checks,
the Python API, the graph a description becomes) are :mod:`feitian.job.spec` (docs/jobs.md).

Other components import only through this root (ARCHITECTURE.md, Layers); what it exports is loaded on first use.
"""

from typing import TYPE_CHECKING

from feitian.base.lazy import lazy_attributes

if TYPE_CHECKING:
    from feitian.job.client import DEFAULT_ROOT, JobClient, JobView, job_grants, task_lines
    from feitian.job.master import JobStatus
    from feitian.job.spec import (
        MAX_FILE_BYTES,
        Chunk,
        Job,
        JobSpec,
        KeySpec,
        Problem,
        Split,
        build_graph,
        decode_job,
        file_splits,
        input_problems,
        instance_counts,
        job_to_dict,
        job_to_json,
        job_to_yaml,
        normalized,
        problems,
        read_job,
        validate,
    )

_SPEC = (
    "MAX_FILE_BYTES",
    "Chunk",
    "Job",
    "JobSpec",
    "KeySpec",
    "Problem",
    "Split",
    "build_graph",
    "decode_job",
    "file_splits",
    "input_problems",
    "instance_counts",
    "job_to_dict",
    "job_to_json",
    "job_to_yaml",
    "normalized",
    "problems",
    "read_job",
    "validate",
)
_LAZY = dict.fromkeys(_SPEC, "feitian.job.spec")
_LAZY.update(dict.fromkeys(("DEFAULT_ROOT", "JobClient", "JobView", "job_grants", "task_lines"), "feitian.job.client"))
_LAZY["JobStatus"] = "feitian.job.master"


__getattr__ = lazy_attributes(__name__, _LAZY)


__all__ = [
    "DEFAULT_ROOT",
    "MAX_FILE_BYTES",
    "Chunk",
    "Job",
    "JobClient",
    "JobSpec",
    "JobStatus",
    "JobView",
    "KeySpec",
    "Problem",
    "Split",
    "build_graph",
    "decode_job",
    "file_splits",
    "input_problems",
    "instance_counts",
    "job_grants",
    "job_to_dict",
    "job_to_json",
    "job_to_yaml",
    "normalized",
    "problems",
    "read_job",
    "task_lines",
    "validate",
]
