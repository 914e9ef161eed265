"""weft: microthreads, channels and cross-interpreter channels for CPython."""
from weft._weft import __version__

__all__ = ["__version__"]
