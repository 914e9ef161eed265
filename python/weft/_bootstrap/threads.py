"""Threads, locks and events of the gateway core.

The gateway's own waits and threads use ``_thread`` and, with the Rust
transport, ``weft._weft.Event``: importing ``threading`` (and the
``functools``/``collections`` it pulls in) costs a new worker about 6 ms of
its start-up.  Where ``threading`` is loaded anyway (the local side, or once
remote code imports it) threads are made with it, so they carry names.
"""

import _thread
import sys

from . import codec as _codec

new_lock = _thread.allocate_lock
new_rlock = _thread.RLock
get_ident = _thread.get_ident


def new_event():
    """An event with ``is_set``/``set``/``clear``/``wait(timeout)``."""
    rust = getattr(_codec.current, "Event", None)
    if rust is not None:
        return rust()
    import threading
    return threading.Event()


def start_thread(target, args=(), name=None):
    """Run ``target(*args)`` in a new daemon thread."""
    threading = sys.modules.get("threading")
    if threading is None:
        _thread.start_new_thread(target, tuple(args))
    else:
        threading.Thread(target=target, args=args, name=name, daemon=True).start()
