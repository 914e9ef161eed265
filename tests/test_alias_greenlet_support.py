"""The test-support functions the `greenlet` alias package exposes for greenlet's
own suite (greenlet._greenlet) must be as careful with references as weft."""
import ctypes
import sys
import threading

from weft import alias


def _thread_dict():
    get = ctypes.pythonapi.PyThreadState_GetDict
    get.restype = ctypes.c_void_p
    return ctypes.cast(get(), ctypes.py_object).value


def _alias_greenlet_module():
    sys.path.insert(0, str(alias.ALIASES))
    try:
        from greenlet import _greenlet
    finally:
        sys.path.remove(str(alias.ALIASES))
    return _greenlet


def test_set_thread_local_keeps_the_thread_dict_refcount():
    _greenlet = _alias_greenlet_module()
    d = _thread_dict()
    before = sys.getrefcount(d)
    for i in range(20):
        _greenlet.set_thread_local("weft-test-%d" % i, i)
    assert sys.getrefcount(d) == before
    assert d["weft-test-19"] == 19
    for i in range(20):
        del d["weft-test-%d" % i]


def test_set_thread_local_value_released_when_the_thread_ends():
    _greenlet = _alias_greenlet_module()
    released = threading.Event()

    class Marker:
        def __del__(self):
            released.set()

    t = threading.Thread(target=lambda: _greenlet.set_thread_local("marker", Marker()))
    t.start()
    t.join()
    assert released.wait(10), "the thread dict's value was not released at thread exit"
