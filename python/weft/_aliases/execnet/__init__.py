"""Alias package: ``import execnet`` gives weft.execnet.

Put the directory containing this package (``weft/_aliases``) first on
``sys.path``/``PYTHONPATH``.  Submodules that execnet users and execnet's own
tests import (``execnet.gateway``, ``execnet.multi``, ``execnet.xspec``,
``execnet.gateway_base``, ``execnet.rsync``) resolve to weft's modules; the
ones weft has no counterpart for (``gateway_io``, ``gateway_bootstrap``,
``gateway_socket``) are absent and their imports fail.
"""

import weft.execnet as _impl
from weft.execnet import *  # noqa: F401,F403
from weft.execnet import __all__, __version__  # noqa: F401


_SUBMODULES = ("gateway", "gateway_base", "gateway_io", "multi", "rsync", "xspec")


def __getattr__(name):
    # execnet.gateway_base etc. are reachable as attributes, as with execnet
    if name in _SUBMODULES:
        import importlib

        return importlib.import_module(__name__ + "." + name)
    return getattr(_impl, name)
