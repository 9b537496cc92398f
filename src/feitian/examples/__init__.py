"""Example services built on feitian's parts, small enough to read in one sitting.

* :mod:`feitian.examples.kv` — a replicated key-value store on the replicated-service kit (``feitian node run
  kv``, ``feitian kv ...``): the consensus layer's test and benchmark workload, and the smallest complete
  replicated service to copy from.
"""

from typing import TYPE_CHECKING

from feitian.base.lazy import lazy_attributes

if TYPE_CHECKING:
    from feitian.examples.kv import KvClient, KvService, Stats

# Exported on first use, for other components (they import only through this root: ARCHITECTURE.md, Layers).
_LAZY = {
    "KvClient": "feitian.examples.kv",
    "KvService": "feitian.examples.kv",
    "Stats": "feitian.examples.kv",
}


__getattr__ = lazy_attributes(__name__, _LAZY)


__all__ = ["KvClient", "KvService", "Stats"]
