"""Testing tools shipped with feitian (like ``trio.testing``).

* :mod:`feitian.testing.sim` — deterministic, seeded whole-cluster simulation. ``python -m
  feitian.testing.sim consensus --seed S`` replays one run of the Raft core exactly.
"""
