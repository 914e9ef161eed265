"""Alias: execnet.multi is weft.execnet.multi."""
import sys

import weft.execnet.multi as _module

sys.modules[__name__] = _module
