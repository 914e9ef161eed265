"""Which codec this side speaks: the pure-Python ``wire`` module or the
Rust one (``weft._weft``, crates weft-wire and weft-transport).

Both write the same bytes (docs/wire.md), so each side chooses for itself:
the local side in ``weft.execnet``, a worker in ``worker_main`` when its
parent names a weft version it can import too.  The boot modules reach the
chosen codec as ``codec.current`` at the time of each call.
"""

from . import wire as _pywire

# the codec in use: the wire module, or what rust_codec() returned
current = _pywire


def set_codec(codec):
    """Swap the codec: any object with the wire module's API (``dumps``,
    ``loads``, ``pack_message``, ``unpack_header``, ``HEADER_SIZE``, the
    message codes and error classes).  This is the seam for the Rust codec;
    both ends must speak the same bytes (docs/wire.md), so swapping one side
    is safe."""
    global current
    current = codec


def rust_codec(version=None):
    """The Rust codec (weft._weft, crate weft-wire) behind the pure-Python wire
    module's API, or None where weft's compiled module is not importable (or,
    when ``version`` is given, is not that version of weft).
    It raises the same DumpError/LoadError classes (those of
    weft._bootstrap.wire; on a worker that name is an alias of the boot
    module), so errors are caught the same way with either codec."""
    try:
        from weft import _weft
        from weft._bootstrap import wire as py_wire
    except ImportError:
        return None
    if current is not py_wire or not hasattr(_weft, "wire_dumps"):
        return None
    if version is not None and getattr(_weft, "__version__", None) != version:
        return None

    class RustCodec:
        pass

    codec = RustCodec()
    for name in dir(py_wire):
        if not name.startswith("__"):
            setattr(codec, name, getattr(py_wire, name))
    codec.dumps = _weft.wire_dumps
    codec.loads = _weft.wire_loads
    codec.rust_version = _weft.__version__
    # the Rust transport (crate weft-transport): FdIO/SocketIO use it
    # and a lighter Event for the item queues
    for name in ("FrameReader", "FrameWriter", "Event", "ItemQueue", "flush_wakeups"):
        setattr(codec, name, getattr(_weft, name, None))
    return codec


def codec_name():
    """``"rust"`` or ``"python"``: the codec this side uses now."""
    return "rust" if getattr(current, "rust_version", None) else "python"


def rust_version():
    """The weft version whose Rust codec this side uses, or None."""
    return getattr(current, "rust_version", None)
