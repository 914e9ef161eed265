"""Alias: execnet.gateway is weft.execnet.gateway."""
import sys

import weft.execnet.gateway as _module

sys.modules[__name__] = _module
