"""greenlet-compatible coroutines: ``from weft.greenlet import greenlet, getcurrent``.

A drop-in for the ``greenlet`` package (3.x semantics); the switching core is
weft's, in Rust. greenlet's own test suite runs against it
(``python -m weft.conformance greenlet``); docs/conformance.md lists what it
skips and the few differences from greenlet ("Differences from greenlet that
gevent could see"); docs/architecture.md describes the engine.
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
# The greenlet release whose behaviour (and own test suite: weft.conformance's
# GREENLET_VERSION) this module follows; `import greenlet` through weft's
# alias reports the same.
__version__ = "3.5.6"
GREENLET_USE_GC = True
GREENLET_USE_TRACING = True
GREENLET_USE_CONTEXT_VARS = True
GREENLET_USE_STANDARD_THREADING = True
