"""Example services built on feitian's parts, small enough to read in one sitting.

* :mod:`feitian.examples.kv` — a replicated key-value store on the replicated-service kit (``feitian node run
  kv``, ``feitian kv ...``): the consensus layer's test and benchmark workload, and the smallest complete
  replicated service to copy from.
"""

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from feitian.examples.kv import KvClient, KvService, Stats

# Exported on first use, for other components (they import only through this root: ARCHITECTURE.md, Layers).
_LAZY = {
    "KvClient": "feitian.examples.kv",
    "KvService": "feitian.examples.kv",
    "Stats": "feitian.examples.kv",
}


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module(module), name)


__all__ = ["KvClient", "KvService", "Stats"]
