"""Alias: execnet.xspec is weft.execnet.xspec."""
import sys

import weft.execnet.xspec as _module

sys.modules[__name__] = _module
