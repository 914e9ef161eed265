"""The one blocking hook of weft.execnet.

Every blocking wait in weft.execnet and in the gateway core
(``Channel.receive``, ``Channel.waitclose``, ``Gateway.join``,
``Reply.get``, ``WorkerPool.waitall``, ``MultiChannel`` waits, the waits of
``Group.terminate``) ends in ``block_until(event, timeout)`` below, where
``event`` is a ``threading.Event`` or weft's own ``Event`` (anything with
``is_set()`` and ``wait(timeout)``) that an IO thread sets.

The decision is made per wait, in the calling thread:

* a thread without tasklets, or whose other tasklets cannot run now, blocks
  as a plain thread (``Channel.receive`` keeps the direct read of
  docs/gateways.md); while other tasklets of the thread exist, in slices
  (``weft._weft.stackless.park``), so that one parked with a deadline or
  woken by another thread runs within 50 ms;
* a tasklet with other runnable tasklets in its thread parks: only it waits,
  the others run, and the event's wake-up (set by the gateway's reader)
  makes it runnable again (``weft._weft.stackless.park``).

``install(fn)`` still replaces the hook for every thread (tests, other
schedulers); ``uninstall()`` puts the per-thread one back.
"""

from weft._bootstrap import core as _core
from weft._weft import stackless as _sl

__all__ = ["block_until", "install", "uninstall"]

_must_park = _sl._must_park
_park = _sl.park


def _default(event, timeout=None):
    if timeout is not None and timeout < 0:
        timeout = 0
    # park() parks the tasklet where another can run, and otherwise blocks
    # the thread: in slices while other tasklets of the thread exist (one
    # parked with a deadline, or woken from another thread, then runs within
    # a slice), in one wait where there are none (a plain thread)
    return _park(event, timeout)


def _blocks_thread():
    return not _must_park()


_hook = _default


def block_until(event, timeout=None):
    """Block until ``event`` is set or ``timeout`` seconds pass.

    Returns True if the event is set, False on timeout.
    """
    if event.is_set():
        return True
    return _hook(event, timeout)


def install(fn):
    """Route all blocking waits through ``fn(event, timeout) -> bool``."""
    global _hook
    _hook = fn
    _core.set_wait_hook(block_until, blocks_thread=False)


def uninstall():
    """Go back to the per-thread hook (block the thread, or park the tasklet)."""
    global _hook
    _hook = _default
    _core.set_wait_hook(block_until, blocks_thread=_blocks_thread)


_core.set_wait_hook(block_until, blocks_thread=_blocks_thread)
