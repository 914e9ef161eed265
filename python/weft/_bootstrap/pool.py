"""The worker pool: runs ``remote_exec`` tasks (and ``Group.terminate``'s
steps) the way its exec model says."""

try:
    from _collections import deque  # not ``collections``: worker start-up
except ImportError:  # pragma: no cover - not CPython
    from collections import deque

from .threads import new_lock
from .waits import block_until


class Reply:
    """The result of a ``WorkerPool.spawn``."""

    def __init__(self, task, event):
        self.task = task
        self._done = event
        self.running = True
        self._result = None
        self._exc = None

    def get(self, timeout=None):
        self.waitfinish(timeout)
        if self._exc is not None:
            raise self._exc
        return self._result

    def waitfinish(self, timeout=None):
        if not block_until(self._done, timeout):
            raise IOError("timeout waiting for %r" % (self.task,))

    def run(self):
        func, args, kwargs = self.task
        try:
            self._result = func(*args, **kwargs)
        except BaseException as exc:
            self._exc = exc
        finally:
            self.running = False
            self._done.set()


class WorkerPool:
    """Runs tasks concurrently with ``execmodel.start`` (threads, green
    threads, tasklets); with ``hasprimary`` the calling (main) thread takes
    tasks too, once it calls ``integrate_as_primary_thread`` (with
    ``primary_only``, every task).  In the tasklet model the primary thread
    runs each of its tasks as a tasklet of its own instead of one after the
    other."""

    def __init__(self, execmodel, hasprimary=False, primary_only=False):
        if hasprimary and not execmodel.has_primary:
            raise ValueError("execmodel %r has no primary thread: its tasks all run in green "
                             "threads" % (execmodel.backend,))
        self.execmodel = execmodel
        self._new_event = execmodel.core_event
        self._primary_only = primary_only
        self._running_lock = new_lock()
        self._running = set()
        self._shuttingdown = False
        self._idle = self._new_event()
        self._idle.set()
        self._primary = None
        if hasprimary:
            self._primary = deque()
            self._primary_wakeup = self._new_event()
            # idle from the start: the first task waits in the queue until the
            # main thread enters integrate_as_primary_thread (execnet runs
            # the first remote_exec in the main thread; signal handlers need it)
            self._primary_busy = False

    def integrate_as_primary_thread(self):
        assert self._primary is not None
        # tasklet model: each task is a tasklet of this thread; this loop (the
        # main tasklet) parks in block_until while they run
        as_tasklets = self.execmodel.backend == "tasklet"
        while True:
            with self._running_lock:
                self._primary_busy = False
                task = self._primary.popleft() if self._primary else None
                if task is None:
                    if self._shuttingdown:
                        return
                    self._primary_wakeup.clear()
                else:
                    self._primary_busy = True
            if task is None:
                block_until(self._primary_wakeup)
            elif as_tasklets:
                self.execmodel.start(self._run_thread, (task,))
            else:
                try:
                    task.run()
                finally:
                    self._finished(task)

    def trigger_shutdown(self):
        with self._running_lock:
            self._shuttingdown = True
            if self._primary is not None:
                self._primary_wakeup.set()

    def active_count(self):
        return len(self._running)

    def _finished(self, reply):
        with self._running_lock:
            self._running.discard(reply)
            if not self._running:
                self._idle.set()

    def _run_thread(self, reply):
        try:
            reply.run()
        finally:
            self._finished(reply)

    def spawn(self, func, *args, **kwargs):
        reply = Reply((func, args, kwargs), self._new_event())
        with self._running_lock:
            if self._shuttingdown:
                raise ValueError("pool is shutting down")
            self._running.add(reply)
            self._idle.clear()
            if self._primary is not None and (self._primary_only or not self._primary_busy):
                self._primary_busy = True
                self._primary.append(reply)
                self._primary_wakeup.set()
                return reply
        self.execmodel.start(self._run_thread, (reply,))
        return reply

    def terminate(self, timeout=None):
        self.trigger_shutdown()
        return self.waitall(timeout)

    def waitall(self, timeout=None):
        return block_until(self._idle, timeout)
