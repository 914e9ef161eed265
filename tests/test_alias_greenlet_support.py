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


def _run_with_alias(code):
    import subprocess
    import textwrap

    env = dict(__import__("os").environ)
    env["PYTHONPATH"] = str(alias.ALIASES) + __import__("os").pathsep + env.get("PYTHONPATH", "")
    return subprocess.run([sys.executable, "-c", textwrap.dedent(code)], env=env,
                          capture_output=True, text=True, timeout=60)


def test_objects_in_greenlet_module_dict_are_released_while_the_interpreter_still_runs_code():
    # greenlet's test_interpreter_shutdown stores objects in greenlet._greenlet
    # and expects them released with that module, while print() still works and
    # a switch still runs; getcurrent() then says the interpreter is finalizing.
    proc = _run_with_alias(
        """
        import greenlet
        gs = []
        def do_it(gs=gs):
            gs[0].parent.switch(1)
        gs.append(greenlet.greenlet(do_it))
        gs.append(greenlet.greenlet(do_it))
        gs[1].switch()  # one greenlet suspended at exit
        class WithDel:
            def __del__(self, gs=gs, getcurrent=greenlet.getcurrent):
                print('Destructor running')
                print('Result', gs[0].switch())
                getcurrent()
        greenlet._greenlet.with_del = WithDel()
        """
    )
    assert proc.returncode == 0, proc.stderr
    assert "Destructor running" in proc.stdout
    assert "Result 1" in proc.stdout
    assert "RuntimeError: greenlet is being finalized" in proc.stderr
