"""greenlet-compatible coroutines: ``from weft.greenlet import greenlet, getcurrent``.

A drop-in for the ``greenlet`` package (3.x semantics); the switching core is
weft's, in Rust. See docs/greenlet.md for the few documented differences.
"""
from weft._weft import (
    GreenletExit,
    error,
    getcurrent,
    gettrace,
    greenlet,
    settrace,
)

__all__ = [
    "greenlet", "getcurrent", "GreenletExit", "error", "settrace", "gettrace",
    "GREENLET_USE_GC", "GREENLET_USE_TRACING", "GREENLET_USE_CONTEXT_VARS",
]
__version__ = "3.2.0"  # the greenlet API level this module follows
GREENLET_USE_GC = True
GREENLET_USE_TRACING = True
GREENLET_USE_CONTEXT_VARS = True
GREENLET_USE_STANDARD_THREADING = True
