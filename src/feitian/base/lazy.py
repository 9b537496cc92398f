"""Package roots that load what they export on first use (PEP 562), so importing a root stays cheap.

::

    _LAZY = {"CoordClient": "feitian.coord.client.client", ...}   # name -> the module that defines it
    __getattr__ = lazy_attributes(__name__, _LAZY)

(with the same names imported under ``if TYPE_CHECKING:`` for the type checker).
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Mapping
from typing import Any

__all__ = ["lazy_attributes"]


def lazy_attributes(package: str, table: Mapping[str, str]) -> Callable[[str], Any]:
    """A module ``__getattr__`` that imports each name of ``table`` (name -> module) when it is first asked for."""

    def __getattr__(name: str) -> Any:
        module = table.get(name)
        if module is None:
            raise AttributeError(f"module {package!r} has no attribute {name!r}")
        return getattr(importlib.import_module(module), name)

    return __getattr__
