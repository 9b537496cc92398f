"""Fuxi's DAG jobs (FUXI-7..11): job descriptions, the JobMaster and its TaskMasters, TaskWorkers, streamline.

A job runs as a Fuxi application: its JobMaster is the application master (``feitian.sched``), its TaskWorkers
run on grants. The pure scheduling core is :mod:`feitian.job.core`.
"""
