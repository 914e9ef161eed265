"""The introspection helpers greenlet's own test suite imports from
`greenlet._greenlet`, answered from weft's core. They live here rather than in
_greenlet.py: a function keeps its module's dict alive, and greenlet's suite
(test_interpreter_shutdown) stores objects in `greenlet._greenlet` expecting
them to be released with that module, as an extension module's are, while the
interpreter can still run their finalizers."""
from weft import _weft

CLOCKS_PER_SEC = 1_000_000


def get_pending_cleanup_count():
    """Greenlets queued for a kill in this thread by other threads."""
    return _weft._pending_kills()


def get_total_main_greenlets():
    """Threads that have a main greenlet and have not exited."""
    return _weft._live_main_greenlets()


_optional_cleanup = False


def enable_optional_cleanup(flag):
    """greenlet can run an extra GC pass when threads die; weft releases a dead
    thread's greenlets at the next entry into weft instead, so this is a no-op
    that only remembers the flag."""
    global _optional_cleanup
    _optional_cleanup = bool(flag)


def get_clocks_used_doing_optional_cleanup():
    """None: weft does no optional cleanup work to account for."""
    return None


def set_thread_local(key, value):
    """Store `value` in the running thread state's dict (what greenlet's helper
    does); it is released when the thread state is cleared."""
    import ctypes

    get_dict = ctypes.pythonapi.PyThreadState_GetDict
    # A borrowed reference: a py_object restype would be taken as a new one and
    # released once per call, freeing the thread's dict while it is still in use.
    get_dict.restype = ctypes.c_void_p
    ctypes.cast(get_dict(), ctypes.py_object).value[key] = value


from weft._weft import _testing as _faults  # noqa: E402
from weft.greenlet import greenlet as _greenlet  # noqa: E402


class UnswitchableGreenlet(_greenlet):
    """greenlet's fault-injection type, on weft's hook (weft._weft._testing):
    with `force_switch_error` set, a switch to it raises SystemError before
    anything moves; with `force_slp_switch_error`, the process aborts after
    the switching greenlet's state was saved (greenlet aborts there too).
    One fault at a time: setting one replaces the other; clearing one that
    is not set leaves the other."""

    def _set(self, kind, on):
        if on:
            _faults.set_fault(self, kind)
        elif _faults.get_fault(self) == kind:
            _faults.set_fault(self, None)

    @property
    def force_switch_error(self):
        return _faults.get_fault(self) == "switch"

    @force_switch_error.setter
    def force_switch_error(self, on):
        self._set("switch", on)

    @property
    def force_slp_switch_error(self):
        return _faults.get_fault(self) == "fatal"

    @force_slp_switch_error.setter
    def force_slp_switch_error(self, on):
        self._set("fatal", on)
