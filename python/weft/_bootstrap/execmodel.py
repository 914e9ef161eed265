"""Exec models: how a gateway runs concurrent work.

execnet 2.1's API of a model (the attributes ``backend``, ``queue``,
``subprocess``, ``socket``; the methods ``start``, ``get_ident``, ``sleep``,
``fdopen``, ``Lock``, ``RLock``, ``Event``) for each one, plus what weft's
gateway core asks of a model on a worker (``prepare``, ``core_event``,
``core_lock``, ``start_core``, ``green``, ``rust_transport``, ``wait_readable``,
``wait_writable``; docs/gateways.md, "Exec models"):

* ``thread``, ``main_thread_only``: OS threads; the worker's receiver is a
  thread, tasks run in threads (the first, or with ``main_thread_only``
  every one, in the main thread).
* ``eventlet``, ``gevent``: green threads of one OS thread.  On a worker the
  receiver is a green thread whose transport waits for its pipe or socket in
  the hub, every ``remote_exec`` runs in a green thread, and the core's
  events are the library's, so a wait lets the others run; locally a green
  group's popen and ssh gateways work the same way.  The library is imported
  at first use (on a worker: while it boots).
* ``tasklet``: ``weft.stackless`` tasklets.  On a worker the receiver and
  every ``remote_exec`` are tasklets of the main thread; every wait of the
  gateway core parks the waiting tasklet while others can run, and the
  transport's reads and full writes park on the descriptor, which the
  scheduler of an otherwise idle thread polls itself (with its mailbox).
  Locally a tasklet group's popen and ssh gateways work the same way, their
  receivers tasklets of the thread that made them.  Needs weft importable
  where the model is used.

A model's ``start`` runs its function concurrently with the caller: a new
thread, green thread, or a tasklet of the calling thread.  These modules are
sent to workers as source, so nothing here imports eventlet, gevent or weft
before a model is used.
"""

import os
import time

from .threads import get_ident, new_event, new_lock, start_thread
from .waits import block_until


class ExecModel:
    """Base of the exec models: OS threads (the ``thread`` model)."""

    backend = "thread"
    # weft's gateway core on a worker (see the module's docstring):
    green = False       # the receiver and the tasks are green threads (or tasklets) of one thread
    # weft's Rust codec and transport may serve (where that weft is there);
    # its reads park a tasklet receiver on the descriptor
    rust_transport = True
    has_primary = True  # the main thread takes tasks (WorkerPool's primary)
    primary_only = False  # ... every task

    def __init__(self, backend=None):
        # ExecModel(name) made every model before there was a class per model
        if backend is not None and backend != self.backend:
            raise ValueError("%s(%r): use get_execmodel(%r) for that model"
                             % (type(self).__name__, backend, backend))

    def __repr__(self):
        return "<ExecModel %r>" % self.backend

    # ---- execnet's API
    @property
    def queue(self):
        import queue
        return queue

    @property
    def subprocess(self):
        import subprocess
        return subprocess

    @property
    def socket(self):
        import socket
        return socket

    def start(self, func, args=()):
        start_thread(func, args)

    def get_ident(self):
        return get_ident()

    def sleep(self, delay):
        time.sleep(delay)

    def fdopen(self, fd, mode, bufsize=-1, closefd=True):
        return os.fdopen(fd, mode, bufsize, closefd=closefd)

    def Lock(self):
        import threading
        return threading.Lock()

    def RLock(self):
        import threading
        return threading.RLock()

    def Event(self):
        import threading
        return threading.Event()

    # ---- what the gateway core asks of the model
    def prepare(self):
        """Import what the model runs on; ImportError (saying which model
        needs what) where it is missing.  A worker calls it while it boots
        and installs the blocking hook it returns, if any (waits.set_wait_hook)."""
        return None

    def core_event(self):
        """An event for the core's own waits (channel items, replies)."""
        return new_event()

    def core_lock(self):
        """A lock for the core's own turns (a transport's writer)."""
        return new_lock()

    def start_core(self, func, name=None):
        """Start one of the core's own loops (a receiver, the exit watchdog)."""
        start_thread(func, name=name)

    # Green models also have wait_readable(fd) and wait_writable(fd, timeout):
    # how the core's transport waits for a descriptor in the hub.


class MainThreadOnlyExecModel(ExecModel):
    backend = "main_thread_only"
    primary_only = True


class _GreenExecModel(ExecModel):
    """What eventlet's and gevent's models share: green threads of one OS
    thread, with the library's hub waiting for I/O and timers."""

    green = True
    rust_transport = False  # the library's hub, not a Rust reader thread, waits for the descriptors
    has_primary = False
    library = None  # the module whose hub runs the green threads

    def prepare(self):
        try:
            __import__(self.library)
        except ImportError as exc:
            raise ImportError("execmodel %r needs %s importable here: %s"
                              % (self.backend, self.library, exc)) from exc

    def core_event(self):
        return self.Event()

    def core_lock(self):
        return self.Lock()

    def start_core(self, func, name=None):
        self.start(func)


class EventletExecModel(_GreenExecModel):
    backend = library = "eventlet"

    @property
    def queue(self):
        import eventlet.queue
        return eventlet.queue

    @property
    def subprocess(self):
        import eventlet.green.subprocess
        return eventlet.green.subprocess

    @property
    def socket(self):
        import eventlet.green.socket
        return eventlet.green.socket

    def start(self, func, args=()):
        import eventlet
        eventlet.spawn_n(func, *args)

    def get_ident(self):
        import eventlet.green.thread
        return eventlet.green.thread.get_ident()

    def sleep(self, delay):
        import eventlet
        eventlet.sleep(delay)

    def fdopen(self, fd, mode, bufsize=-1, closefd=True):
        import eventlet.green.os
        return eventlet.green.os.fdopen(fd, mode, bufsize, closefd=closefd)

    def Lock(self):
        import eventlet.green.threading
        return eventlet.green.threading.RLock()

    def RLock(self):
        import eventlet.green.threading
        return eventlet.green.threading.RLock()

    def Event(self):
        import eventlet.green.threading
        return eventlet.green.threading.Event()

    @staticmethod
    def wait_readable(fd):
        from eventlet.hubs import trampoline
        trampoline(fd, read=True)

    @staticmethod
    def wait_writable(fd, timeout):
        import socket
        from eventlet.hubs import trampoline
        try:
            trampoline(fd, write=True, timeout=timeout, timeout_exc=socket.timeout)
        except socket.timeout:  # the writer looks again
            pass


class GeventExecModel(_GreenExecModel):
    backend = library = "gevent"

    @property
    def queue(self):
        import gevent.queue
        return gevent.queue

    @property
    def subprocess(self):
        import gevent.subprocess
        return gevent.subprocess

    @property
    def socket(self):
        import gevent.socket
        return gevent.socket

    def start(self, func, args=()):
        import gevent
        gevent.spawn(func, *args)

    def get_ident(self):
        import gevent.thread
        return gevent.thread.get_ident()

    def sleep(self, delay):
        import gevent
        gevent.sleep(delay)

    def fdopen(self, fd, mode, bufsize=-1, closefd=True):
        # reads and writes in gevent's thread pool: the hub goes on meanwhile
        import gevent.fileobject
        return gevent.fileobject.FileObjectThread(fd, mode, bufsize, closefd=closefd)

    def Lock(self):
        import gevent.lock
        return gevent.lock.RLock()

    def RLock(self):
        import gevent.lock
        return gevent.lock.RLock()

    def Event(self):
        import gevent.event
        return gevent.event.Event()

    @staticmethod
    def wait_readable(fd):
        from gevent.socket import wait_read
        wait_read(fd)

    @staticmethod
    def wait_writable(fd, timeout):
        import socket
        from gevent.socket import wait_write
        try:
            wait_write(fd, timeout, timeout_exc=socket.timeout)
        except socket.timeout:  # the writer looks again
            pass


def _weft_event():
    """weft's own event (``weft._weft.Event``), whose wake-up posts a parked
    tasklet back to its scheduler: the tasklet model's waits need it even
    where the worker's codec is the pure-Python one (whose events are
    ``threading``'s, which a tasklet cannot park on)."""
    from weft._weft import Event
    return Event()


_NOTHING = object()


def _wait_for(look, event, timeout):
    """What the tasklet model's lock and queue share: ``look()`` until it
    returns something other than ``_NOTHING``, clearing ``event`` before each
    look (whoever makes the next look succeed sets it after) and waiting on it
    between looks through the core's hook; ``_NOTHING`` once ``timeout``
    seconds (None: no limit) have passed."""
    deadline = None if timeout is None else time.monotonic() + timeout
    while True:
        event.clear()
        got = look()
        if got is not _NOTHING:
            return got
        remaining = None if deadline is None else deadline - time.monotonic()
        if remaining is not None and remaining <= 0:
            return _NOTHING
        block_until(event, remaining)


class _TaskletEvent:
    """``threading.Event``'s API whose ``wait`` goes through the core's
    blocking hook: it parks the waiting tasklet while others can run."""

    def __init__(self):
        self._event = _weft_event()

    def is_set(self):
        return self._event.is_set()

    isSet = is_set

    def set(self):
        self._event.set()

    def clear(self):
        self._event.clear()

    def wait(self, timeout=None):
        return block_until(self._event, timeout)


class _TaskletLock:
    """A lock whose blocking ``acquire`` goes through the core's blocking
    hook: a tasklet waiting for it parks while the holder (say, a tasklet
    writing a frame to a full pipe) runs.  Safe across threads too."""

    def __init__(self):
        self._lock = new_lock()
        self._released = _weft_event()

    def acquire(self, blocking=True, timeout=-1):
        if self._lock.acquire(False):
            return True
        if not blocking:
            return False
        got = _wait_for(lambda: True if self._lock.acquire(False) else _NOTHING, self._released,
                        None if timeout is None or timeout < 0 else timeout)
        return got is not _NOTHING

    def release(self):
        self._lock.release()
        self._released.set()

    def locked(self):
        return self._lock.locked()

    def __enter__(self):
        self.acquire()
        return self

    def __exit__(self, *exc):
        self.release()


class _TaskletQueues:
    """The ``queue`` module of the tasklet model: ``Queue``, ``Empty``,
    ``Full`` (the standard ones, imported at first use: ``queue`` pulls in
    ``threading``, milliseconds of a worker's start-up); a blocking ``get``
    parks the tasklet (through the core's hook)."""

    def __getattr__(self, name):
        if name in ("Empty", "Full"):
            import queue
            return getattr(queue, name)
        raise AttributeError(name)

    class Queue:
        def __init__(self, maxsize=0):
            from collections import deque
            self._items = deque()
            self._nonempty = _weft_event()

        def qsize(self):
            return len(self._items)

        def empty(self):
            return not self._items

        def put(self, item, block=True, timeout=None):
            self._items.append(item)
            self._nonempty.set()

        put_nowait = put

        def get(self, block=True, timeout=None):
            items = self._items
            got = _wait_for(lambda: items.popleft() if items else _NOTHING, self._nonempty,
                            timeout if block else 0)
            if got is _NOTHING:
                import queue
                raise queue.Empty()
            return got

        def get_nowait(self):
            return self.get(False)


class TaskletExecModel(ExecModel):
    """weft.stackless tasklets: ``start`` makes a tasklet of the calling
    thread (it runs when that thread's scheduler does: ``stackless.run()``,
    or a wait of the gateway core, which parks the waiting tasklet); waits on
    this model's ``Event`` and ``queue`` park too.  ``Lock``/``RLock``,
    ``socket``, ``subprocess`` and ``fdopen`` are the threading ones: they
    block the whole thread."""

    backend = "tasklet"
    primary_only = True  # a worker's tasks are tasklets of its main thread
    # the receiver is a tasklet too: the transport's reads and full writes
    # park on the descriptor (the Rust transport's, or, with the pure-Python
    # one, wait_readable and wait_writable)
    green = True
    queue = _TaskletQueues()

    def prepare(self):
        try:
            from weft._weft import stackless as engine
        except ImportError as exc:
            raise ImportError("execmodel 'tasklet' needs weft (weft.stackless) importable here: %s"
                              % (exc,)) from exc
        # every wait of the worker's core parks the waiting tasklet while
        # another can run (and blocks the thread in slices otherwise)
        return engine.park

    def start(self, func, args=()):
        from weft import stackless
        stackless.tasklet(func)(*args)

    def get_ident(self):
        from weft import stackless
        return stackless.getcurrentid()

    def sleep(self, delay):
        if delay <= 0:
            from weft import stackless
            stackless.schedule()
        else:
            block_until(_weft_event(), delay)

    def Event(self):
        return _TaskletEvent()

    def core_event(self):
        return _weft_event()

    def core_lock(self):
        return _TaskletLock()

    def start_core(self, func, name=None):
        self.start(func)

    @staticmethod
    def wait_readable(fd):
        from weft._weft import stackless as engine
        engine._wait_fd(fd)

    @staticmethod
    def wait_writable(fd, timeout):
        from weft._weft import stackless as engine
        engine._wait_fd(fd, True, timeout)


_EXECMODELS = {
    "thread": ExecModel,
    "main_thread_only": MainThreadOnlyExecModel,
    "eventlet": EventletExecModel,
    "gevent": GeventExecModel,
    "tasklet": TaskletExecModel,
}


def get_execmodel(backend):
    """The exec model named ``backend`` (or ``backend`` itself, a model);
    ValueError naming the models for any other name."""
    if isinstance(backend, ExecModel):
        return backend
    try:
        cls = _EXECMODELS[backend]
    except (KeyError, TypeError):
        raise ValueError("unknown execmodel %r: weft supports %s"
                         % (backend, ", ".join(_EXECMODELS))) from None
    return cls()
