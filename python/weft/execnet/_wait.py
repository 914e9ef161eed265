"""The one blocking hook of weft.execnet.

Every blocking wait in weft.execnet and in the gateway core
(``Channel.receive``, ``Channel.waitclose``, ``Gateway.join``,
``Reply.get``, ``WorkerPool.waitall``, ``MultiChannel`` waits, the waits of
``Group.terminate``) ends in ``block_until(event, timeout)`` below, where
``event`` is a ``threading.Event`` or weft's own ``Event`` (anything with
``is_set()`` and ``wait(timeout)``) that an IO thread sets.

The decision is made per wait, in the calling thread:

* a thread without tasklets, or a tasklet alone in its thread (no other
  tasklet runnable, parked or blocked), blocks as a plain thread
  (``Channel.receive`` keeps the direct read of docs/gateways.md);
* otherwise the tasklet parks (``weft._weft.stackless.park``): only it
  waits, the others run, and the event's wake-up (set by the gateway's
  reader) makes it runnable again; when nothing can run, the thread idles in
  the scheduler, which wakes for whichever tasklet's wake-up comes first.

``install(fn)`` still replaces the hook for every thread (tests, other
schedulers); ``uninstall()`` puts the per-thread one back.
"""

from weft._bootstrap import core as _core
from weft._weft import stackless as _sl

__all__ = ["block_until", "install", "uninstall"]

_budget = _sl._thread_block_budget
_park = _sl.park


def _default(event, timeout=None):
    if timeout is not None and timeout < 0:
        timeout = 0
    if _budget() is True:
        return event.wait(timeout)
    return _park(event, timeout)


# Channel.receive asks this before it blocks its thread (and reads the
# gateway itself): True, False (park instead) or seconds at a time.
_blocks_thread = _budget


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
