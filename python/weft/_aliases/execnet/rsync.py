"""Alias: execnet.rsync is weft.execnet.rsync."""
import sys

import weft.execnet.rsync as _module

sys.modules[__name__] = _module
