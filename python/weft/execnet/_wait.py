"""The one blocking hook of weft.execnet.

Every blocking wait in weft.execnet and in the gateway core
(``Channel.receive``, ``Channel.waitclose``, ``Gateway.join``,
``Reply.get``, ``WorkerPool.waitall``, ``MultiChannel`` waits, the waits of
``Group.terminate``) ends in ``block_until(event, timeout)`` below, where
``event`` is a ``threading.Event`` (anything with ``is_set()`` and
``wait(timeout)``) that an IO thread sets.

Today it blocks the calling OS thread.  The tasklet scheduler (weft.stackless)
will take it over with ``install(fn)``: inside a tasklet, ``fn`` parks only that
tasklet until the event is set, and lets the other tasklets of the thread run.
Nothing else in weft.execnet may block on a lock, queue or event directly.
"""

from weft._bootstrap import core as _core

__all__ = ["block_until", "install", "uninstall"]


def _default(event, timeout=None):
    if timeout is not None and timeout < 0:
        timeout = 0
    return event.wait(timeout)


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
    """Go back to blocking the OS thread."""
    global _hook
    _hook = _default
    _core.set_wait_hook(block_until, blocks_thread=True)


_core.set_wait_hook(block_until, blocks_thread=True)
