"""Alias: execnet.gateway_base is weft's gateway core (weft._bootstrap.core).

execnet.gateway_base also holds the serializer; the names its users and tests
reach for (``dumps``/``loads``/``dump``/``load``, ``dumps_internal``,
``loads_internal``, ``Unserializer``) are added to the core module here, in
the alias only.
"""
import sys

import weft._bootstrap.core as _module
import weft.execnet as _execnet
from weft._bootstrap import wire as _wire


class Unserializer:
    """``Unserializer(io).load()``: decode one internal-format value from a
    binary file (reads it to the end)."""

    def __init__(self, stream, channel_or_gateway=None, strconfig=None):
        self.stream = stream

    def load(self, versioned=False):
        return _wire.loads(self.stream.read(), versioned=versioned)


def dumps_internal(obj):
    return _wire.dumps(obj)


def loads_internal(data, channelfactory=None, strconfig=None):
    return _wire.loads(data, channel_factory=channelfactory)


for _name, _value in [
    ("dumps", _execnet.dumps), ("loads", _execnet.loads), ("dump", _execnet.dump),
    ("load", _execnet.load), ("dumps_internal", dumps_internal),
    ("loads_internal", loads_internal), ("Unserializer", Unserializer),
]:
    if not hasattr(_module, _name):
        setattr(_module, _name, _value)
sys.modules[__name__] = _module
