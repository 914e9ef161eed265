"""Stackless-compatible tasklets and channels: ``import weft.stackless as stackless``.

A drop-in for Stackless Python's ``stackless`` module (3.7's documented API) on
stock CPython 3.11+. Tasklets run on weft's coroutine engine (the whole C
stack is switched, in Rust); the scheduler, the channels and preemption are
in Rust too (``weft._weft.stackless``). What differs from Stackless, and
why, is in docs/stackless.md.
"""
import builtins as _builtins
import contextlib as _contextlib
import sys as _sys

from weft._weft import GreenletExit as _GreenletExit
from weft._weft import stackless as _core

__all__ = [
    "tasklet", "channel", "bomb", "atomic", "TaskletExit",
    "run", "schedule", "schedule_remove", "getcurrent", "getcurrentid", "getmain",
    "getruncount", "getthreads", "get_thread_info", "set_channel_callback",
    "get_channel_callback", "set_schedule_callback", "get_schedule_callback",
    "set_error_handler", "switch_trap", "enable_softswitch", "pickle_flags",
    "pickle_flags_default", "current", "main", "runcount", "threads",
    "PICKLEFLAGS_PRESERVE_TRACING_STATE", "PICKLEFLAGS_PRESERVE_AG_FINALIZER",
    "PICKLEFLAGS_RESET_AG_FINALIZER", "PICKLEFLAGS_PICKLE_CONTEXT",
]


class TaskletExit(SystemExit, _GreenletExit):
    """Raised in a tasklet to kill it; a tasklet that does not catch it ends quietly."""


# Stackless code expects TaskletExit among the builtins.
_builtins.TaskletExit = TaskletExit


class bomb:
    """An exception in transit: sent through a channel, it is raised by the receiver."""

    __slots__ = ("type", "value", "traceback")

    def __init__(self, exp_type=None, exp_value=None, exp_traceback=None):
        if exp_type is None and exp_value is None:
            exp_type, exp_value, exp_traceback = _sys.exc_info()
        if isinstance(exp_type, BaseException):
            exp_type, exp_value = type(exp_type), exp_type
        self.type = exp_type
        self.value = exp_value
        self.traceback = exp_traceback

    def raise_(self):
        """Raise the exception this bomb carries."""
        value = self.value
        if not isinstance(value, BaseException):
            value = self.type() if value is None else self.type(value)
        raise value.with_traceback(self.traceback)

    def __reduce__(self):
        # The traceback cannot be pickled; the exception travels without it.
        return (bomb, (self.type, self.value, None))

    def __repr__(self):
        return f"<stackless.bomb {self.type!r}: {self.value!r}>"


_core._init_types(TaskletExit, bomb)

# The compiled types, re-exported under Stackless's names.
tasklet = _core.tasklet
channel = _core.channel

run = _core.run
schedule = _core.schedule
schedule_remove = _core.schedule_remove
getcurrent = _core.getcurrent
getcurrentid = _core.getcurrentid
getmain = _core.getmain
getruncount = _core.getruncount
getthreads = _core.getthreads
get_thread_info = _core.get_thread_info
set_channel_callback = _core.set_channel_callback
get_channel_callback = _core.get_channel_callback
set_schedule_callback = _core.set_schedule_callback
get_schedule_callback = _core.get_schedule_callback
set_error_handler = _core.set_error_handler
switch_trap = _core.switch_trap
enable_softswitch = _core.enable_softswitch


class atomic:
    """``with stackless.atomic():`` the current tasklet is not preempted inside."""

    __slots__ = ("_old", "_tasklet")

    def __enter__(self):
        self._tasklet = getcurrent()
        self._old = self._tasklet.set_atomic(True)
        return self

    def __exit__(self, *exc):
        self._tasklet.set_atomic(self._old)
        return False


PICKLEFLAGS_PRESERVE_TRACING_STATE = 1
PICKLEFLAGS_PRESERVE_AG_FINALIZER = 2
PICKLEFLAGS_RESET_AG_FINALIZER = 4
PICKLEFLAGS_PICKLE_CONTEXT = 8
_pickle_flags = [0]
_pickle_flags_default = [0]


def pickle_flags(new_flags=-1, mask=-1):
    """Stackless's pickling flags: returns the old flags; sets ``new_flags`` under ``mask``.

    weft pickles only tasklets that have not started (and channels, bombs),
    which none of these flags change; they are kept for code that sets them.
    """
    return _set_flags(_pickle_flags, new_flags, mask)


def pickle_flags_default(new_flags=-1, mask=-1):
    """The default of ``pickle_flags`` for new threads; same calling convention."""
    return _set_flags(_pickle_flags_default, new_flags, mask)


def _set_flags(cell, new_flags, mask):
    old = cell[0]
    if new_flags != -1:
        if new_flags < 0 or new_flags > 15:
            raise ValueError("pickle flags must be a combination of the PICKLEFLAGS_* constants")
        cell[0] = (old & ~mask) | (new_flags & mask)
    return old


def __getattr__(name):
    # Stackless's module properties.
    if name == "current":
        return getcurrent()
    if name == "main":
        return getmain()
    if name == "runcount":
        return getruncount()
    if name == "threads":
        return getthreads()
    raise AttributeError(f"module 'stackless' has no attribute {name!r}")


def _kill_left_at_exit():
    """At interpreter exit the main thread's tasklets that are still alive
    are killed, as Stackless does: each gets ``TaskletExit``, so its
    ``finally`` clauses and context managers run. Registered with atexit,
    which runs after the other threads were joined. A tasklet that raises
    something else while dying is reported on stderr, not raised."""
    import gc
    import threading

    if threading.current_thread() is not threading.main_thread() or not _core._scheduler_exists():
        return
    main = getmain()
    if getcurrent() is not main:
        return  # sys.exit() inside a tasklet: its thread is not at its end
    left = [o for o in gc.get_objects()
            if isinstance(o, tasklet) and o.alive and not o.is_main and o.thread_id == main.thread_id]
    for t in left:
        if not t.alive:
            continue
        try:
            t.kill()
        except BaseException as exc:  # noqa: B036 - reported, never raised at exit
            import traceback

            print(f"weft.stackless: a tasklet killed at interpreter exit raised ({t!r}):", file=_sys.stderr)
            traceback.print_exception(type(exc), exc, exc.__traceback__, file=_sys.stderr)


import atexit as _atexit  # noqa: E402

_atexit.register(_kill_left_at_exit)
