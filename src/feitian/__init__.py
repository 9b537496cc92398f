"""feitian: an open, Python implementation of the Apsara (飞天) cloud kernel."""

from feitian.errors import FeitianError

__version__ = "0.1.0"

__all__ = ["FeitianError", "__version__"]
