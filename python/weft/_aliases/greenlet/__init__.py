"""`import greenlet` answered by weft (see weft/alias.py)."""
from weft.greenlet import *  # noqa: F401,F403
from weft.greenlet import __version__  # noqa: F401
from ._greenlet import CLOCKS_PER_SEC, enable_optional_cleanup, get_clocks_used_doing_optional_cleanup  # noqa: F401

from weft._weft import _C_API  # noqa: F401  (greenlet.h's capsule, always built)
