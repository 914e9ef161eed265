"""The one blocking hook of the gateway core.

Every wait that a user-facing call performs (Channel.receive,
Channel.waitclose, Reply.get, WorkerPool.waitall, Gateway.join, ...) goes
through ``block_until(event, timeout)``.  ``event`` is anything with
``is_set()`` and ``wait(timeout)`` (a ``threading.Event``).  The local side
installs ``weft.execnet._wait.block_until`` here with ``set_wait_hook``; a
tasklet scheduler takes over blocking by replacing that one function.
"""


def _thread_block_until(event, timeout=None):
    """Default hook: block the calling OS thread until ``event`` is set."""
    if timeout is not None and timeout < 0:
        timeout = 0
    return event.wait(timeout)


_block_until_hook = _thread_block_until
# True while the hook blocks the calling OS thread (no tasklet scheduler has
# taken it over): then a channel's Rust item queue may block by itself.  Or a
# function that says so for the calling thread.  Read as
# ``waits.hook_blocks_thread`` at the time of each wait.
hook_blocks_thread = True


def set_wait_hook(fn, blocks_thread=None):
    """Install ``fn(event, timeout) -> bool`` as the blocking hook;
    ``blocks_thread`` says whether it just blocks the calling OS thread
    (default: only when ``fn`` is None, the built-in hook), or is a function
    that says so for the calling thread at the time of each wait: True,
    False, or a number of seconds the thread may block at a time before it
    asks again (see ``channel._get_sliced``)."""
    global _block_until_hook, hook_blocks_thread
    _block_until_hook = fn or _thread_block_until
    if blocks_thread is None:
        blocks_thread = fn is None
    hook_blocks_thread = blocks_thread if callable(blocks_thread) else bool(blocks_thread)


def block_until(event, timeout=None):
    """Wait until ``event.is_set()`` or ``timeout`` seconds pass; True if set."""
    if event.is_set():
        return True
    return _block_until_hook(event, timeout)
