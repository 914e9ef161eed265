"""Stand-in for greenlet's compiled `greenlet._greenlet` module: the public
names and the test-support helpers (from _support.py). No function is defined
here, so nothing but the module object keeps this module's dict alive: objects
stored in it are released when the module is torn down, as with an extension
module."""
from weft.greenlet import *  # noqa: F401,F403

from ._support import (  # noqa: F401
    CLOCKS_PER_SEC,
    UnswitchableGreenlet,
    enable_optional_cleanup,
    get_clocks_used_doing_optional_cleanup,
    get_pending_cleanup_count,
    get_total_main_greenlets,
    set_thread_local,
)

try:
    from weft._weft import _C_API  # noqa: F401
except ImportError:
    pass
