"""Task bodies of the example DAG jobs (``examples/jobs/*.yaml``, ``feitian demo``): plain functions a TaskWorker
calls as ``function(records, **args)`` — records in, records out (docs/jobs.md, "Code")."""
