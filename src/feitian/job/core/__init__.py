"""The pure job core (FUXI-7..11): a job's DAG and, on it, the JobMaster's scheduling decisions.

No asyncio, sockets, clocks, randomness or file I/O: time is an argument. See :mod:`feitian.job.core.graph` for
the DAG it runs.
"""

from feitian.job.core.graph import MAX_INSTANCES, MAX_TASKS, EdgeDef, JobGraph, Pattern, TaskDef

__all__ = ["MAX_INSTANCES", "MAX_TASKS", "EdgeDef", "JobGraph", "Pattern", "TaskDef"]
