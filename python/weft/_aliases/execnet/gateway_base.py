"""Alias: execnet.gateway_base is weft's gateway core (weft._bootstrap.core)."""
import sys

import weft._bootstrap.core as _module
import weft.execnet as _execnet

# execnet.gateway_base also carries the serializer functions
for _name in ("dumps", "loads", "dump", "load"):
    if not hasattr(_module, _name):
        setattr(_module, _name, getattr(_execnet, _name))
sys.modules[__name__] = _module
