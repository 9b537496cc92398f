"""Foundations shared by every component: clocks and randomness (``clock.py``), units and sizes (``units.py``:
``KiB``, ``MiB``, ``GiB``, ``SECOND_NS``, ``MS_NS``), and where machines are (``topology.py``: racks, the
machine/rack/elsewhere distance that placement and scheduling share). No I/O here."""

from feitian.base.clock import Clock, MonotonicClock, RandomSource
from feitian.base.topology import Distance, Topology, distance, distinct_racks
from feitian.base.units import MS_NS, SECOND_NS, US_NS, GiB, KiB, MiB, ns_of_s, s_of_ns

__all__ = [
    "MS_NS",
    "SECOND_NS",
    "US_NS",
    "Clock",
    "Distance",
    "GiB",
    "KiB",
    "MiB",
    "MonotonicClock",
    "RandomSource",
    "Topology",
    "distance",
    "distinct_racks",
    "ns_of_s",
    "s_of_ns",
]
