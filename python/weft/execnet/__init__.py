"""weft.execnet: execnet-2.1-compatible gateways and channels.

    import weft.execnet as execnet
    gw = execnet.makegateway("popen")
    ch = gw.remote_exec("channel.send(channel.receive() + 1)")
    ch.send(1); assert ch.receive() == 2

The gateway core is Python; the codec and the transport are Rust
(``weft._weft``: crates weft-wire and weft-transport) on this side and on every
worker that can import the same weft version, chosen while the worker boots,
and pure Python (``weft._bootstrap.wire``, ``FdIO``/``SocketIO``) elsewhere;
see docs/wire.md, "Codec negotiation".  All blocking goes through
``weft.execnet._wait.block_until`` (see that module).
"""

from weft._bootstrap.core import (
    Channel,
    DataFormatError,
    DumpError,
    GatewayDied,
    LoadError,
    RemoteError,
    TimeoutError,
)
from weft._bootstrap import wire as _wire

from weft._bootstrap import core as _core

from . import _wait  # noqa: F401  (installs the blocking hook first)

# Where weft's compiled module is here, this side encodes, decodes, reads and
# writes frames in Rust (same bytes, docs/wire.md), and tells its workers to do
# the same if they can; WEFT_PURE_PYTHON_CODEC=1 opts out (both ends).
import os as _os

if not _os.environ.get("WEFT_PURE_PYTHON_CODEC"):
    _fast = _core.rust_codec()
    if _fast is not None:
        _core.set_codec(_fast)
from ._connect import HostNotFound
from .gateway import Gateway
from .multi import Group, MultiChannel, default_group, makegateway, set_execmodel
from .xspec import XSpec

__version__ = "2.1.2+weft"

__all__ = [
    "Channel",
    "DataFormatError",
    "DumpError",
    "Gateway",
    "GatewayDied",
    "Group",
    "HostNotFound",
    "LoadError",
    "MultiChannel",
    "RemoteError",
    "RSync",
    "TimeoutError",
    "XSpec",
    "default_group",
    "dump",
    "dumps",
    "load",
    "loads",
    "makegateway",
    "set_execmodel",
]


def dumps(obj):
    """Serialize ``obj`` (versioned format, as ``execnet.dumps``)."""
    return _wire.dumps(obj, versioned=True)


def loads(bytestring, py2str_as_py3str=False, py3str_as_py2str=False):
    """Deserialize bytes made by ``dumps``."""
    return _wire.loads(bytestring, versioned=True, py2str_as_py3str=py2str_as_py3str,
                       py3str_as_py2str=py3str_as_py2str)


def dump(byteio, obj):
    """Write the serialization of ``obj`` to a binary file."""
    byteio.write(dumps(obj))


def load(io, py2str_as_py3str=False, py3str_as_py2str=False):
    """Read one serialized object from a binary file (or mmap)."""
    return _wire.loads(_read_one(io), versioned=True, py2str_as_py3str=py2str_as_py3str,
                       py3str_as_py2str=py3str_as_py2str)


def _read_one(stream):
    """The bytes of one serialized value from ``stream``, leaving what follows
    (so several values dumped to one file load one by one)."""
    out = bytearray()

    def take(n):
        got = b""
        while len(got) < n:
            chunk = stream.read(min(n - len(got), 1 << 20))
            if not chunk:
                raise LoadError("truncated data: expected %d more bytes" % (n - len(got)))
            got += chunk
        out.extend(got)
        return got

    take(1)  # format version
    operand = _wire.OPERAND_SIZE
    while True:
        op = take(1)[0]
        if op == _wire.STOP:
            return bytes(out)
        size = operand.get(op)
        if size is None:
            raise LoadError("unknown opcode 0x%02x" % op)
        if size == _wire.SIZED:
            n = int.from_bytes(take(4), "big", signed=True)
            if n < 0:
                raise LoadError("negative length %d" % n)
            take(n)
        else:
            take(size)


def __getattr__(name):
    if name == "RSync":
        from .rsync import RSync
        return RSync
    raise AttributeError("module 'weft.execnet' has no attribute %r" % (name,))
