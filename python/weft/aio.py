"""Tasklets and asyncio in one thread: ``weft.aio``.

    import asyncio, weft.aio as aio, weft.stackless as stackless

    async def main():
        async with aio.scheduler():              # tasklets run inside this loop
            t = aio.spawn(work, 1, 2)            # a tasklet; awaitable for its result
            print(await t)
            ch = stackless.channel()
            aio.spawn(lambda: ch.send("from a tasklet"))
            print(await aio.receive(ch))         # a coroutine receives from a tasklet

    def work(a, b):
        data = aio.await_(asyncio.sleep(0.1, result=a + b))   # only this tasklet waits
        return data

The rules (docs/aio.md):

* ``scheduler()`` runs the thread's tasklets from an asyncio task: whenever
  tasklets are runnable, the loop runs them (``stackless.run()``) and then goes
  on with its coroutines; it never blocks the loop.
* ``await_(awaitable)`` inside a tasklet runs the awaitable on the loop and
  blocks only the tasklet; its result is returned, its exception raised.
  An asyncio cancellation of it is raised in the tasklet as
  ``asyncio.CancelledError``; killing the tasklet (``TaskletExit``) cancels
  the awaitable.
* ``await send(ch, v)`` / ``await receive(ch)`` from a coroutine hand a value
  to / take one from a tasklet channel without blocking the loop; cancelling
  the coroutine withdraws the operation (nothing is sent or lost).
* ``spawn(fn, *args, **kwargs)`` starts a tasklet and returns an awaitable for
  its result (its exception, if it raises; ``asyncio.CancelledError`` if it
  is killed). Cancelling the await kills the tasklet.
"""
import asyncio
import contextlib
import sys

import weft.stackless as stackless

__all__ = ["scheduler", "await_", "send", "receive", "spawn"]

_drivers = {}  # loop -> _Driver


class _Driver:
    """Runs the loop thread's tasklets whenever some are runnable."""

    def __init__(self, loop):
        self.loop = loop
        self.wake = asyncio.Event()
        self.task = None
        self.stopping = False

    def kick(self):
        self.wake.set()

    async def run(self):
        while not self.stopping:
            # Tasklets run inside the loop's thread, in its main tasklet's place.
            stackless.run()
            if stackless.getruncount() > 1:
                await asyncio.sleep(0)  # let coroutines in between
                continue
            self.wake.clear()
            if stackless.getruncount() > 1:
                continue
            await self.wake.wait()


def _driver():
    """The scheduler of the loop running in this thread."""
    try:
        loop = asyncio.get_running_loop()
    except RuntimeError:
        loop = None
    d = _drivers.get(loop)
    if d is None:
        raise RuntimeError("weft.aio: no scheduler is running in this thread's event loop; "
                           "wrap the code in `async with weft.aio.scheduler():`")
    return d


@contextlib.asynccontextmanager
async def scheduler():
    """Run this thread's tasklets from the running loop while the block runs."""
    loop = asyncio.get_running_loop()
    if loop in _drivers:
        raise RuntimeError("weft.aio.scheduler() is already running in this loop")
    d = _drivers[loop] = _Driver(loop)
    d.task = loop.create_task(d.run())
    try:
        yield d
    finally:
        d.stopping = True
        d.kick()
        try:
            await d.task
        finally:
            del _drivers[loop]


def await_(awaitable):
    """Inside a tasklet: wait for ``awaitable`` on the loop; only this tasklet blocks."""
    if stackless.getcurrent().is_main:
        if asyncio.iscoroutine(awaitable):
            awaitable.close()  # never run: no "never awaited" warning
        raise RuntimeError("weft.aio.await_() is for tasklets; in a coroutine, use `await`")
    d = _driver()
    fut = _start(awaitable, d.loop)
    if fut.done():  # finished in its first step (an eager start): no wait at all
        return fut.result()
    box = stackless.channel()
    # The waiting tasklet runs from the done callback itself, at once (it was
    # blocked, so nothing else is owed a turn), until it blocks again; only
    # if it leaves tasklets runnable is the driver woken for them.
    box.preference = -1

    def done(f):
        if box.balance < 0:
            if f.cancelled():
                box.send_exception(asyncio.CancelledError)
            elif f.exception() is not None:
                box.send_throw(f.exception())
            else:
                box.send(f.result())
        if stackless.getruncount() > 1:
            d.kick()

    fut.add_done_callback(done)
    try:
        return box.receive()
    except BaseException:
        if not fut.done():
            fut.cancel()  # killed (TaskletExit) or interrupted: the awaitable goes too
        raise


def _start(awaitable, loop):
    """A future for ``awaitable``. On CPython 3.12+ a coroutine's first step
    runs at once, in the calling tasklet (an eager start), so a coroutine
    that does not suspend costs no trip through the loop."""
    if _EAGER and asyncio.iscoroutine(awaitable):
        return asyncio.Task(awaitable, loop=loop, eager_start=True)
    return asyncio.ensure_future(awaitable, loop=loop)


_EAGER = sys.version_info >= (3, 12)


def _settle(fut, fn, *args, **kwargs):
    """In a tasklet: run ``fn`` and settle the asyncio future ``fut`` with its
    outcome (a TaskletExit cancels it and ends the tasklet)."""
    try:
        r = fn(*args, **kwargs)
    except stackless.TaskletExit:
        if not fut.done():
            fut.cancel()
        raise
    except BaseException as e:  # noqa: BLE001 - handed to the awaiting coroutine
        if not fut.done():
            fut.set_exception(e)
        return
    if not fut.done():
        fut.set_result(r)


async def _via_tasklet(op):
    """Runs ``op()`` (a blocking channel operation) in a helper tasklet; its
    outcome resolves the returned awaitable. Cancelled: the tasklet is killed."""
    d = _driver()
    fut = d.loop.create_future()

    def body():
        _settle(fut, op)

    t = stackless.tasklet(body)()
    d.kick()
    try:
        return await fut
    except asyncio.CancelledError:
        t.kill()  # the channel operation is withdrawn with it
        raise


async def send(ch, value):
    """From a coroutine: send ``value`` on the tasklet channel ``ch``."""
    if ch.balance < 0:
        old, ch.preference = ch.preference, 1  # the receiver runs from the driver
        try:
            ch.send(value)
        finally:
            ch.preference = old
        _driver().kick()
        return None
    return await _via_tasklet(lambda: ch.send(value))


async def receive(ch):
    """From a coroutine: receive from the tasklet channel ``ch``."""
    if ch.balance > 0:
        old, ch.preference = ch.preference, -1  # the sender is made runnable, we go on
        try:
            v = ch.receive()
        finally:
            ch.preference = old
        _driver().kick()
        return v
    return await _via_tasklet(ch.receive)


class _TaskletResult:
    """Awaitable result of a tasklet started with ``spawn``."""

    def __init__(self, tasklet, fut):
        self.tasklet = tasklet
        self._fut = fut

    def __await__(self):
        try:
            return (yield from self._fut.__await__())
        except asyncio.CancelledError:
            if self.tasklet.alive:
                self.tasklet.kill()
            raise


def spawn(fn, *args, **kwargs):
    """Start ``fn(*args, **kwargs)`` in a tasklet; await the result for its outcome."""
    d = _driver()
    fut = d.loop.create_future()

    def body():
        _settle(fut, fn, *args, **kwargs)

    t = stackless.tasklet(body)()
    d.kick()
    return _TaskletResult(t, fut)
